"""Denoiser backbones for the diffusion augmenters, all with one contract: `forward(x, t, cond=None)`.

x is (B, d), t is (B,) the noise-level input (for EDM, c_noise = ln(sigma) / 4), cond is (B, c) or None; the output
is (B, d).

`ResidualMLPDenoiser` follows SynthER (conglu1997/SynthER, `synther/diffusion/denoiser_network.py`, with
`config/resmlp_denoiser.gin` for the offline defaults: width 2048, 6 blocks, ReLU, no LayerNorm, dim_t 128):

- time embedding: `fourier_features` // 2 fixed frequencies w ~ N(0, 1) (drawn once, never trained; kept, as by
  the authors, as a parameter with requires_grad=False), giving [t, sin(2 pi w t), cos(2 pi w t)], i.e.
  `fourier_features` + 1 = 17 values, then Linear -> SiLU -> Linear to dim_t;
- the input (concatenated with cond when `cond_dim` is given, the authors' conditioning) is projected by one
  Linear to dim_t and the time embedding is added;
- Linear(dim_t -> width), `depth` pre-activation residual blocks h + Linear(act(LN(h))) with ONE linear each, then
  (LN,) act and Linear(width -> d).  LayerNorm (only with `layer_norm=True`) sits where the authors put it: at the
  start of each block and once after the last block.

Initialisation is PyTorch's default for every layer (the authors do not re-initialise): Linear weights and biases
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), LayerNorm ones/zeros.  Here those draws, and the Fourier frequencies, come
from the `generator` argument (a CPU torch.Generator, seeded 0 when None): layers are created uninitialised
(`torch.nn.utils.skip_init`) and then filled explicitly from the generator, so construction is deterministic and
never touches the global RNG.  The authors draw from the global RNG; the draws here come in their constructor's
order (trunk Linear layers, input projection, Fourier frequencies, time MLP), so a generator seeded s gives the
weights their model gets after torch.manual_seed(s) (to float rounding of the uniform bound).

Deviation, as a named behaviour: the authors' unconditional network silently ignores a `cond` it is given (and a
conditional one asserts that cond is there); here both mismatches raise ValueError.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import skip_init

_ACTIVATIONS = {"relu": F.relu, "silu": F.silu, "gelu": F.gelu, "elu": F.elu, "tanh": torch.tanh}


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    return torch.Generator().manual_seed(0) if generator is None else generator


def torch_default_linear(d_in: int, d_out: int, generator: torch.Generator) -> nn.Linear:
    """nn.Linear with PyTorch's default initialisation distribution, drawn from `generator`."""
    lin = skip_init(nn.Linear, d_in, d_out)
    bound = 1.0 / math.sqrt(d_in)  # kaiming_uniform(a=sqrt(5)) on the weight and the default bias bound agree
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=generator)
        lin.bias.uniform_(-bound, bound, generator=generator)
    return lin


class RandomFourierEmbedding(nn.Module):
    """t (B,) -> [t, sin(2 pi w t), cos(2 pi w t)] (B, features + 1) with features // 2 fixed w ~ N(0, 1)."""

    def __init__(self, features: int = 16, generator: torch.Generator | None = None):
        super().__init__()
        if features <= 0 or features % 2:
            raise ValueError(f"fourier_features must be a positive even number, got {features}")
        weights = torch.randn(features // 2, generator=_default_generator(generator))
        self.weights = nn.Parameter(weights, requires_grad=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t[:, None]
        freqs = t * self.weights[None, :] * (2 * math.pi)
        return torch.cat((t, freqs.sin(), freqs.cos()), dim=-1)


class ResidualBlock(nn.Module):
    """h + Linear(act(LN(h))): pre-activation, one linear layer."""

    def __init__(self, width: int, act, layer_norm: bool, generator: torch.Generator):
        super().__init__()
        self.ln = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.linear = torch_default_linear(width, width, generator)
        self.act = act

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.linear(self.act(self.ln(h)))


class ResidualMLPDenoiser(nn.Module):
    """SynthER's residual-MLP denoiser; see the module docstring."""

    def __init__(self, d_in: int, width: int = 2048, depth: int = 6, dim_t: int = 128, fourier_features: int = 16,
                 layer_norm: bool = False, activation: str = "relu", cond_dim: int | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}' (one of {sorted(_ACTIVATIONS)})")
        gen = _default_generator(generator)
        act = _ACTIVATIONS[activation]
        self.d_in, self.cond_dim = d_in, cond_dim
        # Draw order as in the authors' constructor (see the module docstring).
        self.inp = torch_default_linear(dim_t, width, gen)
        self.blocks = nn.Sequential(*[ResidualBlock(width, act, layer_norm, gen) for _ in range(depth)])
        self.final_ln = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.act = act
        self.out = torch_default_linear(width, d_in, gen)
        self.proj = torch_default_linear(d_in + (cond_dim or 0), dim_t, gen)
        self.fourier = RandomFourierEmbedding(fourier_features, gen)
        self.time_mlp = nn.Sequential(torch_default_linear(fourier_features + 1, dim_t, gen), nn.SiLU(),
                                      torch_default_linear(dim_t, dim_t, gen))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if (cond is None) != (self.cond_dim is None):
            raise ValueError("cond must be given exactly when the network was built with cond_dim "
                             f"(cond_dim={self.cond_dim}, cond {'missing' if cond is None else 'given'})")
        if cond is not None:
            x = torch.cat((x, cond), dim=-1)
        t = t.to(x.dtype).expand(x.shape[0]) if t.dim() == 0 else t.to(x.dtype)
        h = self.proj(x) + self.time_mlp(self.fourier(t))
        h = self.final_ln(self.blocks(self.inp(h)))
        return self.out(self.act(h))
