"""Shared neural building blocks for the harness's own PyTorch code (trainers and augmenters that d3rlpy lacks).

- `mlp`: Linear layers with an activation (and optionally LayerNorm after it) between them, none after the last;
  Glorot-uniform weights and zero biases (the Flax default initialiser that the JAX reference code uses).
- `EnsembleMLP`: E independent MLPs evaluated as one batched matmul per layer; input (B, in) or (E, B, in),
  output (E, B, out).  Each member has its own weights and LayerNorm affine parameters.
- `sample_in_ball`: points uniform in the solid d-ball (Gaussian direction, radius R * u^(1/d)).
- `InverseDynamics`: DiffStitch's inverse-dynamics MLP [s_t, s_t+1] -> width -> width -> a (ReLU), reading
  the two states as given ("pair") or as raw [z(s_t), (s_t+1 - s_t) / std(s' - s)] ("delta").
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def glorot_(weight: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU(approximate="tanh")  # Flax's nn.gelu is the tanh approximation
    if name == "relu":
        return nn.ReLU()
    if name in ("swish", "silu"):
        return nn.SiLU()  # x * sigmoid(x): the Swish of the dynamics-ensemble reference code
    raise ValueError(f"unknown activation '{name}'")


def mlp(in_dim: int, hidden: list[int] | tuple[int, ...], out_dim: int, act: str = "gelu",
        layer_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden, out_dim]
    for i in range(len(dims) - 1):
        lin = nn.Linear(dims[i], dims[i + 1])
        glorot_(lin.weight, dims[i], dims[i + 1])
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(dims) - 2:
            layers.append(activation(act))
            if layer_norm:
                layers.append(nn.LayerNorm(dims[i + 1]))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim))
        glorot_(self.weight, in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (E, B, in) -> (E, B, out)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    def __init__(self, members: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    def __init__(self, members: int, in_dim: int, hidden: list[int] | tuple[int, ...], out_dim: int,
                 act: str = "gelu", layer_norm: bool = False):
        super().__init__()
        self.members = members
        dims = [in_dim, *hidden, out_dim]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(EnsembleLinear(members, dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(activation(act))
                if layer_norm:
                    layers.append(EnsembleLayerNorm(members, dims[i + 1]))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, *x.shape)
        return self.layers(x)


def sample_in_ball(shape: tuple[int, ...], radius: float, generator: torch.Generator | None = None,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """`shape[-1]`-dimensional points uniform in the solid ball of the given radius."""
    d = shape[-1]
    direction = torch.randn(shape, generator=generator, device=device)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    u = torch.rand((*shape[:-1], 1), generator=generator, device=device)
    return direction * (radius * u.pow(1.0 / d))


@contextlib.contextmanager
def seeded_init(generator: torch.Generator):
    """Build layers with torch's default initialisers under a seed drawn from `generator` (one draw in
    [0, 2^31)); the global RNG is restored afterwards, so construction never consumes global randomness."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2 ** 31, (1,), generator=generator, device=generator.device)))
        yield


def float_tensor(a, device) -> torch.Tensor:
    """A float32 tensor on `device` from a tensor or an array (a read-only memory-mapped array is copied first)."""
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=torch.float32)
    a = np.asarray(a, dtype=np.float32)
    return torch.as_tensor(a if a.flags.writeable else a.copy(), device=device)


class InverseDynamics(nn.Module):
    """Actions (in the caller's action normalisation) from consecutive states.  `input`: "pair" feeds
    [s_t, s_t+1] as given (normalised by the caller, as DiffStitch's code); "delta" expects raw states and feeds
    [(s_t - mean) / std, (s_t+1 - s_t) / std(s' - s)], the scales from `observations` / `next_observations`
    (buffers: saved with the weights; ones until fitted or loaded).  Layers built with torch's default
    initialisers under `generator` (`seeded_init`)."""

    def __init__(self, obs_dim: int, act_dim: int, width: int, generator: torch.Generator, input: str = "pair",
                 observations=None, next_observations=None):
        super().__init__()
        if input not in ("pair", "delta"):
            raise ValueError(f"InverseDynamics: input must be 'pair' or 'delta', got '{input}'")
        self.input = input
        with seeded_init(generator):
            self.net = nn.Sequential(nn.Linear(2 * obs_dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                     nn.Linear(width, act_dim))
        if input == "delta":
            stats = np.ones((3, obs_dim))
            if observations is not None:
                obs = np.asarray(observations, np.float64)
                step = np.asarray(next_observations, np.float64) - obs
                stats = np.stack([obs.mean(0), np.maximum(obs.std(0), 1e-6), np.maximum(step.std(0), 1e-6)])
            self.register_buffer("stats", torch.as_tensor(stats, dtype=torch.float32))

    def forward(self, s: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
        if self.input == "delta":
            mean, std, step = self.stats
            return self.net(torch.cat([(s - mean) / std, (s_next - s) / step], dim=-1))
        return self.net(torch.cat([s, s_next], dim=-1))
