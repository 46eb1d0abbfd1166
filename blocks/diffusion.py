"""EDM diffusion (Karras et al. 2022) as SynthER uses it: preconditioning, training loss, schedule, Heun sampler.

Follows conglu1997/SynthER `synther/diffusion/elucidated_diffusion.py` (`ElucidatedDiffusion`, itself adapted from
lucidrains' elucidated-diffusion) with the values of `config/resmlp_denoiser.gin`:

- preconditioning (EDM Table 1): c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(sd^2 + s^2),
  c_in = 1 / sqrt(s^2 + sd^2), c_noise = ln(max(s, 1e-20)) / 4, sd = sigma_data = 1.0;
  D(x; s) = c_skip x + c_out net(c_in x, c_noise, cond)  (`EDMPrecond`);
- training (`edm_loss`): per sample ln s ~ N(p_mean, p_std^2) = N(-1.2, 1.2^2), noised = x0 + s eps; loss = batch
  mean of w(s) * (mean over dimensions of (D(noised; s) - x0)^2), w(s) = (s^2 + sd^2) / (s sd)^2;
- schedule (`karras_sigmas`): s_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, i = 0..N-1, then
  s_N = 0; smin 0.002, smax 80, rho 7, float32 as in the authors' code;
- sampler (`heun_sampler`), the authors' loop: x_0 = s_0 z; at step i (s = s_i, s' = s_{i+1})
      gamma_i = min(S_churn / N, sqrt(2) - 1) if S_tmin <= s_i <= S_tmax else 0,
      eps ~ S_noise N(0, I)  (drawn at every step, also where gamma_i = 0),
      s_hat = s (1 + gamma_i),  x_hat = x + sqrt(s_hat^2 - s^2) eps,
      d = (x_hat - D(x_hat; s_hat)) / s_hat,  x' = x_hat + (s' - s_hat) d  (Euler),
      if s' != 0:  d' = (x' - D(x'; s')) / s',  x' = x_hat + (s' - s_hat) (d + d') / 2  (Heun),
  2N - 1 evaluations of D in all.  With SynthER's N = 128 and S_churn = 80, S_churn / N = 0.625 is capped, so
  gamma = sqrt(2) - 1 ~ 0.414 at the steps whose s_i lies in [S_tmin, S_tmax] = [0.05, 50]: steps 11..106 of
  0..127 (96 steps; s_11 ~ 49.0, s_106 ~ 0.0505); every other step adds no noise.

Options (named, defaults as the authors use them offline):
- `EDMConfig.clamp`: None (default) or c > 0.  With c, every denoised estimate D is clamped to [-c, c] and so is
  the final sample; this is the authors' `clamp=True` (c = 1), which SynthER enables only with its min-max
  normaliser, never with the default z-score one.
- `EDMConfig.steps`: 128 is the number of sampling steps in the gin (the class default is 32).

Why written here: the maintained implementation of this sampler, lucidrains' `denoising-diffusion-pytorch`
(`ElucidatedDiffusion`, 2.3.4), requires accelerate, torchvision, pytorch-fid, pillow and scipy for an image
trainer we do not use; this module needs torch only, and tests/test_diffusion.py checks it on known answers.

Deviation (none in the maths): all randomness comes from a torch.Generator passed in, never the global RNG; the
sampler draws in the authors' order (initial noise, then one eps per step), the loss draws sigma, then eps.
Samples are returned in the model's (normalised) space; un-normalising is the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import nn


@dataclass
class EDMConfig:
    sigma_data: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    p_mean: float = -1.2
    p_std: float = 1.2
    steps: int = 128
    s_churn: float = 80.0
    s_tmin: float = 0.05
    s_tmax: float = 50.0
    s_noise: float = 1.003
    clamp: float | None = None

    def validate(self) -> EDMConfig:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "clamp" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"EDMConfig.{f.name} must be a finite number, got {v!r}")
        positive = ("sigma_data", "sigma_min", "sigma_max", "rho", "s_noise")
        for name in positive + (("clamp",) if self.clamp is not None else ()):
            if getattr(self, name) <= 0:
                raise ValueError(f"EDMConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"EDMConfig.sigma_max ({self.sigma_max}) must exceed sigma_min ({self.sigma_min})")
        if self.p_std < 0:
            raise ValueError(f"EDMConfig.p_std must be >= 0, got {self.p_std}")
        if not isinstance(self.steps, int) or self.steps < 2:
            raise ValueError(f"EDMConfig.steps must be an integer >= 2, got {self.steps!r}")
        if self.s_churn < 0:
            raise ValueError(f"EDMConfig.s_churn must be >= 0, got {self.s_churn}")
        if self.s_tmin < 0 or self.s_tmax < self.s_tmin:
            raise ValueError(f"EDMConfig.s_tmin/s_tmax must satisfy 0 <= s_tmin <= s_tmax, "
                             f"got {self.s_tmin}, {self.s_tmax}")
        return self


def preconditioning(sigma, sigma_data: float = 1.0):
    """(c_skip, c_out, c_in, c_noise) at noise level(s) `sigma` (float or tensor; tensors keep their shape)."""
    sigma = torch.as_tensor(sigma, dtype=torch.get_default_dtype()) if not torch.is_tensor(sigma) else sigma
    var = sigma ** 2 + sigma_data ** 2
    c_skip = sigma_data ** 2 / var
    c_out = sigma * sigma_data * var.rsqrt()
    c_in = var.rsqrt()
    c_noise = torch.log(sigma.clamp(min=1e-20)) * 0.25
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


class EDMPrecond(nn.Module):
    """D(x; sigma) = c_skip x + c_out net(c_in x, c_noise, cond) around a backbone with `forward(x, t, cond)`."""

    def __init__(self, net: nn.Module, sigma_data: float = 1.0):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma, cond: torch.Tensor | None = None) -> torch.Tensor:
        batch = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.dim() == 0:
            sigma = sigma.expand(batch)
        c_skip, c_out, c_in, c_noise = preconditioning(sigma, self.sigma_data)
        pad = (batch,) + (1,) * (x.dim() - 1)
        out = self.net(c_in.view(pad) * x, c_noise, cond)
        return c_skip.view(pad) * x + c_out.view(pad) * out


def edm_loss(model: EDMPrecond, x0: torch.Tensor, cfg: EDMConfig, generator: torch.Generator,
             cond: torch.Tensor | None = None) -> torch.Tensor:
    """SynthER's EDM training loss on a batch x0 (already normalised); `generator` on x0's device."""
    batch = x0.shape[0]
    normal = torch.randn(batch, generator=generator, device=x0.device, dtype=x0.dtype)
    sigma = (cfg.p_mean + cfg.p_std * normal).exp()
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    noised = x0 + sigma.view((batch,) + (1,) * (x0.dim() - 1)) * eps
    denoised = model(noised, sigma, cond)
    per_sample = ((denoised - x0) ** 2).reshape(batch, -1).mean(dim=1)
    return (per_sample * loss_weight(sigma, cfg.sigma_data)).mean()


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float, device=None) -> torch.Tensor:
    """The `steps` + 1 noise levels sigma_max ... sigma_min, 0 (float32, descending)."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    i = torch.arange(steps, device=device, dtype=torch.float32)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + i / (steps - 1) * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def churn_gammas(sigmas, cfg: EDMConfig) -> list[float]:
    """gamma_i for each step i (len(sigmas) - 1 values): min(S_churn/N, sqrt 2 - 1) where S_tmin <= s_i <= S_tmax."""
    steps = len(sigmas) - 1
    g = min(cfg.s_churn / steps, math.sqrt(2) - 1)
    return [g if cfg.s_tmin <= s <= cfg.s_tmax else 0.0 for s in sigmas[:-1]]


@torch.no_grad()
def heun_sampler(denoise: Callable, shape, cfg: EDMConfig, generator: torch.Generator, device="cpu",
                 dtype: torch.dtype = torch.float32, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Draw `shape` (batch first) samples with SynthER's stochastic Heun sampler (see the module docstring).

    `denoise(x, sigma_batch, cond)` returns D(x; sigma) with sigma_batch a (B,) tensor (an `EDMPrecond` fits);
    `generator` lives on `device` and supplies all noise.
    """
    cfg.validate()
    sigmas = karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).tolist()
    gammas = churn_gammas(sigmas, cfg)
    batch = shape[0]

    def denoised(x: torch.Tensor, sigma: float) -> torch.Tensor:
        out = denoise(x, torch.full((batch,), sigma, device=device, dtype=dtype), cond)
        return out if cfg.clamp is None else out.clamp(-cfg.clamp, cfg.clamp)

    x = sigmas[0] * torch.randn(shape, generator=generator, device=device, dtype=dtype)
    for sigma, sigma_next, gamma in zip(sigmas[:-1], sigmas[1:], gammas):
        eps = cfg.s_noise * torch.randn(shape, generator=generator, device=device, dtype=dtype)
        sigma_hat = sigma + gamma * sigma
        x_hat = x + math.sqrt(sigma_hat ** 2 - sigma ** 2) * eps
        d = (x_hat - denoised(x_hat, sigma_hat)) / sigma_hat
        x_next = x_hat + (sigma_next - sigma_hat) * d
        if sigma_next != 0:
            d_prime = (x_next - denoised(x_next, sigma_next)) / sigma_next
            x_next = x_hat + 0.5 * (sigma_next - sigma_hat) * (d + d_prime)
        x = x_next
    return x if cfg.clamp is None else x.clamp(-cfg.clamp, cfg.clamp)
