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

`TemporalUnet` is Decision Diffuser's 1-D temporal U-Net as DiffStitch trains it (guangheli12/DiffStitch and
anuragajay/decision-diffuser, `diffuser/models/temporal.py::TemporalUnet` with `helpers.py`'s SinusoidalPosEmb,
Downsample1d, Upsample1d, Conv1dBlock; DiffStitch's configs: dim 128, dim_mults (1, 4, 8), horizon 100, returns
conditioned).  Its contract extends the one above: `forward(x, t, cond=None, keep=None)` with x (B, H, D)
channels last (the trajectory), t (B,) the DDPM step, cond (B, 1) the return and keep (B,) the classifier-free
dropout mask (1 keeps the return embedding, 0 drops it).  The architecture, read from the authors' code:

- embedding: SinusoidalPosEmb(dim) (half = dim // 2 frequencies 10000^(-k / (half - 1)), [sin, cos]) ->
  Linear(dim, 4 dim) -> Mish -> Linear(4 dim, dim); the return MLP Linear(1, dim) -> Mish -> Linear(dim, 4 dim)
  -> Mish -> Linear(4 dim, dim), concatenated after the time embedding (embed_dim = 2 dim; dim unconditioned);
- channels dims = [D, dim * m for m in dim_mults]; one down level per consecutive pair, each two
  ResidualTemporalBlocks (in -> out, out -> out) and a Downsample1d (Conv1d k3 s2 p1) except at the last level;
  two mid blocks at the deepest width; one up level per pair but the first, reversed, each two blocks
  (2 out -> in, in -> in) on [x, skip] and an Upsample1d (ConvTranspose1d k4 s2 p1) at EVERY up level (the
  authors' `is_last` test there is never true), so the skip of the first down level is never used; final
  Conv1dBlock(dim, dim) and a 1x1 Conv1d(dim, D);
- ResidualTemporalBlock(in, out): Conv1dBlock(in, out)(x) + Linear(Mish(emb)) broadcast over time, then
  Conv1dBlock(out, out), plus a 1x1 Conv1d residual (identity when in == out); Conv1dBlock = Conv1d(k, padding
  k // 2) -> GroupNorm(8) -> Mish.

Named behaviours: the authors draw the dropout mask inside forward (Bernoulli(1 - p) from the global RNG, during
training) and zero the return embedding for the unconditional pass (`force_dropout`); here the caller passes
`keep`, and `cond=None` on a returns-conditioned net gives a zero return embedding (the same output as keep = 0).
A `cond` or `keep` given to a net built with returns_condition=False raises ValueError; a horizon (the
constructor's, or the H of an input: the net is fully convolutional, as the authors') not divisible by
2 ** (len(dim_mults) - 1) raises ValueError (the authors' net fails there on the skip concatenation).

Every layer keeps PyTorch's default initialisation; layers are created in the authors' order, inside
`torch.random.fork_rng` with the CPU default generator re-seeded from a seed drawn from `generator` (seeded 0 when
None), so the global RNG state is left as it was and equal generators give bit-identical weights.
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


# -------------------------------------------------------------------------------------- Decision Diffuser U-Net

class SinusoidalPosEmb(nn.Module):
    """t (B,) -> [sin(t f), cos(t f)] (B, dim), f_k = 10000^(-k / (dim // 2 - 1)), k < dim // 2."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"SinusoidalPosEmb needs an even dim >= 4, got {dim}")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000) / (half - 1)))
        arg = t.float()[:, None] * freqs[None, :]
        return torch.cat((arg.sin(), arg.cos()), dim=-1)


class Downsample1d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample1d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Conv1dBlock(nn.Module):
    """Conv1d (same padding) -> GroupNorm(n_groups) -> Mish on (B, C, H)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int = 8):
        super().__init__()
        if c_out % n_groups:
            raise ValueError(f"Conv1dBlock: {c_out} channels are not divisible into {n_groups} groups")
        self.block = nn.Sequential(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                                   nn.GroupNorm(n_groups, c_out), nn.Mish())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ResidualTemporalBlock(nn.Module):
    """conv_block(c_in -> c_out) + Linear(Mish(emb)), conv_block(c_out -> c_out), plus a 1x1-conv residual."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, kernel_size: int = 5):
        super().__init__()
        self.blocks = nn.ModuleList([Conv1dBlock(c_in, c_out, kernel_size), Conv1dBlock(c_out, c_out, kernel_size)])
        self.time_mlp = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, c_out))
        self.residual_conv = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.blocks[0](x) + self.time_mlp(emb)[:, :, None]
        return self.blocks[1](h) + self.residual_conv(x)


class TemporalUnet(nn.Module):
    """Decision Diffuser's temporal U-Net (eps predictor over (B, H, D) trajectories); see the module docstring."""

    def __init__(self, horizon: int, transition_dim: int, dim: int = 128, dim_mults=(1, 4, 8), kernel_size: int = 5,
                 returns_condition: bool = True, generator: torch.Generator | None = None):
        super().__init__()
        dim_mults = tuple(dim_mults)
        if not dim_mults:
            raise ValueError("TemporalUnet: dim_mults must not be empty")
        factor = 2 ** (len(dim_mults) - 1)
        if horizon < 1 or horizon % factor:
            raise ValueError(f"TemporalUnet: horizon {horizon} must be a positive multiple of "
                             f"2 ** (len(dim_mults) - 1) = {factor} for dim_mults {dim_mults}")
        self.horizon, self.transition_dim, self.returns_condition = horizon, transition_dim, returns_condition
        self.factor = factor
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=_default_generator(generator)).item())
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU generator only: CUDA generators are not touched
            self._build(transition_dim, dim, dim_mults, kernel_size)

    def _build(self, transition_dim: int, dim: int, dim_mults: tuple, kernel_size: int) -> None:
        mish = nn.Mish
        self.time_mlp = nn.Sequential(SinusoidalPosEmb(dim), nn.Linear(dim, 4 * dim), mish(),
                                      nn.Linear(4 * dim, dim))
        self.dim = dim
        if self.returns_condition:
            self.returns_mlp = nn.Sequential(nn.Linear(1, dim), mish(), nn.Linear(dim, 4 * dim), mish(),
                                             nn.Linear(4 * dim, dim))
            embed_dim = 2 * dim
        else:
            embed_dim = dim
        dims = [transition_dim] + [dim * m for m in dim_mults]
        in_out = list(zip(dims[:-1], dims[1:]))
        self.downs = nn.ModuleList()
        for level, (c_in, c_out) in enumerate(in_out):
            last = level == len(in_out) - 1
            self.downs.append(nn.ModuleList([
                ResidualTemporalBlock(c_in, c_out, embed_dim, kernel_size),
                ResidualTemporalBlock(c_out, c_out, embed_dim, kernel_size),
                nn.Identity() if last else Downsample1d(c_out)]))
        self.mid_block1 = ResidualTemporalBlock(dims[-1], dims[-1], embed_dim, kernel_size)
        self.mid_block2 = ResidualTemporalBlock(dims[-1], dims[-1], embed_dim, kernel_size)
        self.ups = nn.ModuleList()
        for c_in, c_out in reversed(in_out[1:]):
            self.ups.append(nn.ModuleList([
                ResidualTemporalBlock(2 * c_out, c_in, embed_dim, kernel_size),
                ResidualTemporalBlock(c_in, c_in, embed_dim, kernel_size),
                Upsample1d(c_in)]))
        self.final_conv = nn.Sequential(Conv1dBlock(dim, dim, kernel_size), nn.Conv1d(dim, transition_dim, 1))

    def _embedding(self, t: torch.Tensor, cond: torch.Tensor | None, keep: torch.Tensor | None,
                   batch: int) -> torch.Tensor:
        if t.dim() == 0:
            t = t.expand(batch)
        emb = self.time_mlp(t)
        if not self.returns_condition:
            if cond is not None or keep is not None:
                raise ValueError("TemporalUnet built with returns_condition=False takes no cond or keep")
            return emb
        if cond is None:
            ret = emb.new_zeros(batch, self.dim)
        else:
            ret = self.returns_mlp(cond.to(emb.dtype).reshape(batch, 1))
            if keep is not None:
                ret = ret * keep.to(ret.dtype)[:, None]
        return torch.cat([emb, ret], dim=-1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.transition_dim or x.shape[1] % self.factor:
            raise ValueError(f"TemporalUnet expects x of shape (B, H, {self.transition_dim}) with H a multiple of "
                             f"{self.factor}, got {tuple(x.shape)}")
        emb = self._embedding(torch.as_tensor(t, device=x.device), cond, keep, x.shape[0])
        h = x.transpose(1, 2)
        skips = []
        for block1, block2, down in self.downs:
            h = block2(block1(h, emb), emb)
            skips.append(h)
            h = down(h)
        h = self.mid_block2(self.mid_block1(h, emb), emb)
        for block1, block2, up in self.ups:
            h = torch.cat((h, skips.pop()), dim=1)
            h = up(block2(block1(h, emb), emb))
        return self.final_conv(h).transpose(1, 2)
