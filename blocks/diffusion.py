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

DDPM (second half of this module), as DiffStitch (guangheli12/DiffStitch) uses it through Decision Diffuser's
`diffuser/` package (anuragajay/decision-diffuser, `code/diffuser/`; the two copies agree on everything below):

- schedule (`DDPMSchedule`, `diffuser/models/helpers.py::cosine_beta_schedule` and the buffers of
  `diffuser/models/diffusion.py::GaussianInvDynDiffusion`): abar(u) = cos((u + s) / (1 + s) pi/2)^2 at
  u = i / T, i = 0..T, normalised by abar(0); beta_i = clip(1 - abar(i+1) / abar(i), 0, max_beta), computed in
  float64 (numpy there, torch here: tests/test_ddpm.py checks the float32 betas are bit-identical), then float32;
  alphas_cumprod = cumprod(1 - beta) and every derived term in float32 as the authors do:
  posterior variance beta_t (1 - abar_{t-1}) / (1 - abar_t), its log clamped at 1e-20, mean coefficients
  beta_t sqrt(abar_{t-1}) / (1 - abar_t) (on x0) and (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) (on x_t);
- training (`ddpm_loss`, `GaussianInvDynDiffusion.loss` / `p_losses`): t ~ U{0..T-1}, x_t = q_sample(x0, t, eps),
  known positions of x_t overwritten by x0 (DiffStitch's `apply_conditioning` with a (mask, values) condition
  tensor, generalised here to `apply_inpainting`), eps-prediction MSE weighted by the unknown-position mask (the
  authors pass the mask as the loss weights of `WeightedStateL2`).  The return condition is dropped with
  probability cond_dropout (0.25 in DiffStitch's configs); the authors draw that mask inside the network
  (`TemporalUnet.forward`, Bernoulli(1 - p) per sample), here it is drawn in the loss and passed as `keep`;
- sampler (`ddpm_sample`, `GaussianInvDynDiffusion.p_sample_loop` / `p_sample` / `p_mean_variance`):
  x = 0.5 z, inpainted BEFORE the loop; for i = T-1..0: eps = eps_u + w (eps_c - eps_u) with w = 1.2 (authors:
  two network calls, cond with use_dropout=False, uncond with force_dropout=True; here one batched call on
  [x, x] with keep = [0, 1]); x0_hat = sqrt(1/abar) x - sqrt(1/abar - 1) eps, clamped to [-1, 1]
  (clip_denoised=True in every DiffStitch config); posterior mean and clipped log variance at (x0_hat, x, t);
  x = mean + 1[t > 0] exp(log_var / 2) 0.5 z, where z is drawn at EVERY step, t = 0 included, and only masked
  there (as the authors do); then inpainted again.  The 0.5 on the initial noise and on every posterior draw is
  `DDPMConfig.noise_scale`.

Defaults of `DDPMConfig` are DiffStitch's `detail_configs/*.py`: n_diffusion_steps 100 (Decision Diffuser's
locomotion config uses 200), clip_denoised True, condition_guidance_w 1.2, condition_dropout 0.25.

Deviations, named: randomness from a torch.Generator (draws: the loss draws t, then eps, then keep; the sampler
draws the initial noise, then one noise tensor per step); the guided prediction is one batched call; the loss is
normalised by the number of unknown elements (`reduction="unknown"`, the default) where the authors' weighted
`.mean()` divides by all B H D elements (`reduction="all"` reproduces that); the loss has no inverse-dynamics term
(DiffStitch trains its inverse dynamics MLP jointly, loss = (diffusion + inverse) / 2; that belongs to the caller).
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


# ------------------------------------------------------------------------------------------------------------- DDPM

@dataclass
class DDPMConfig:
    steps: int = 100
    cosine_s: float = 0.008
    max_beta: float = 0.999
    clip_denoised: float | None = 1.0
    noise_scale: float = 0.5
    guidance: float = 1.2
    cond_dropout: float = 0.25

    def validate(self) -> DDPMConfig:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "clip_denoised" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"DDPMConfig.{f.name} must be a finite number, got {v!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"DDPMConfig.steps must be an integer >= 1, got {self.steps!r}")
        if self.cosine_s < 0:
            raise ValueError(f"DDPMConfig.cosine_s must be >= 0, got {self.cosine_s}")
        if not 0 < self.max_beta < 1:
            raise ValueError(f"DDPMConfig.max_beta must lie in (0, 1), got {self.max_beta}")
        if self.clip_denoised is not None and self.clip_denoised <= 0:
            raise ValueError(f"DDPMConfig.clip_denoised must be None or > 0, got {self.clip_denoised}")
        if self.noise_scale < 0:
            raise ValueError(f"DDPMConfig.noise_scale must be >= 0, got {self.noise_scale}")
        if not 0 <= self.cond_dropout <= 1:
            raise ValueError(f"DDPMConfig.cond_dropout must lie in [0, 1], got {self.cond_dropout}")
        return self


def cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Decision Diffuser's cosine beta schedule: float64 arithmetic, float32 result of length `steps`."""
    u = torch.linspace(0, steps + 1, steps + 1, dtype=torch.float64) / (steps + 1)  # = i / steps, as the authors
    abar = torch.cos((u + s) / (1 + s) * (math.pi * 0.5)) ** 2
    abar = abar / abar[0]
    betas = 1 - abar[1:] / abar[:-1]
    return betas.clamp(0, max_beta).to(torch.float32)


class DDPMSchedule:
    """The float32 tables of a DDPM with Decision Diffuser's cosine schedule (see the module docstring).

    Indexing takes t as a (B,) integer tensor and broadcasts over the remaining dimensions of x.
    """

    _TABLES = ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
               "sqrt_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
               "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
               "posterior_mean_coef2")

    def __init__(self, cfg: DDPMConfig | None = None):
        cfg = (cfg or DDPMConfig()).validate()
        self.steps = cfg.steps
        betas = cosine_betas(cfg.steps, cfg.cosine_s, cfg.max_beta)
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([torch.ones(1), abar[:-1]])
        self.betas, self.alphas, self.alphas_cumprod, self.alphas_cumprod_prev = betas, alphas, abar, abar_prev
        self.sqrt_alphas_cumprod = abar.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - abar).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / abar).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / abar - 1).sqrt()
        self.posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
        self.posterior_log_variance_clipped = self.posterior_variance.clamp(min=1e-20).log()
        self.posterior_mean_coef1 = betas * abar_prev.sqrt() / (1.0 - abar)
        self.posterior_mean_coef2 = (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar)

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device) -> DDPMSchedule:
        """Move every table to `device` (in place, like nn.Module.to) and return self."""
        for name in self._TABLES:
            setattr(self, name, getattr(self, name).to(device))
        return self

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return table[t.long()].view((t.shape[0],) + (1,) * (x.dim() - 1)).to(x.dtype)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
        return self._at(self.sqrt_alphas_cumprod, t, x0) * x0 + self._at(self.sqrt_one_minus_alphas_cumprod, t,
                                                                           x0) * noise

    def predict_start_from_noise(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 = sqrt(1 / abar_t) x_t - sqrt(1 / abar_t - 1) eps (the inverse of q_sample given eps)."""
        return self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - self._at(self.sqrt_recipm1_alphas_cumprod,
                                                                                 t, x_t) * eps

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and clipped log variance of q(x_{t-1} | x_t, x0); the log variance broadcasts like t."""
        mean = self._at(self.posterior_mean_coef1, t, x_t) * x0 + self._at(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, self._at(self.posterior_log_variance_clipped, t, x_t)


def apply_inpainting(x: torch.Tensor, mask: torch.Tensor | None, values: torch.Tensor | None) -> torch.Tensor:
    """x with the positions where the bool `mask` is True replaced by `values` (both broadcastable to x).

    With mask (B, H, 1) this fixes whole time steps of a (B, H, D) trajectory: Decision Diffuser's
    `apply_conditioning` (which fixes step 0), generalised to any known positions as DiffStitch uses it.
    `mask=None` returns x unchanged.
    """
    if mask is None:
        return x
    if values is None:
        raise ValueError("apply_inpainting: values must be given with a mask")
    return torch.where(mask, values.to(x.dtype), x)


def ddpm_loss(net: Callable, x0: torch.Tensor, known_mask: torch.Tensor | None, schedule: DDPMSchedule,
              cfg: DDPMConfig, generator: torch.Generator, cond: torch.Tensor | None = None,
              reduction: str = "unknown") -> torch.Tensor:
    """DiffStitch's epsilon-prediction loss on a batch x0 (B, ...) of normalised trajectories.

    Draws, in this order from `generator` (on x0's device): t (B,) uniform in [0, steps); noise ~ N(0, I) of x0's
    shape; and, only when `cond` is given, keep (B,) = 1[U < 1 - cond_dropout] as floats.  x_t = q_sample(x0, t,
    noise) with the known positions (bool `known_mask`, broadcastable to x0; None: nothing known) reset to x0;
    eps_hat = net(x_t, t, cond, keep) (keep None without cond).  The squared error (eps_hat - noise)^2 is summed
    over the unknown elements and divided by their number (`reduction="unknown"`), or by the number of all
    elements (`reduction="all"`, the authors' weighted mean); a batch with no unknown element gives 0.
    """
    if reduction not in ("unknown", "all"):
        raise ValueError(f"reduction must be 'unknown' or 'all', got {reduction!r}")
    batch, device, dtype = x0.shape[0], x0.device, x0.dtype
    t = torch.randint(0, schedule.steps, (batch,), generator=generator, device=device)
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=dtype)
    keep = None
    if cond is not None:
        keep = (torch.rand(batch, generator=generator, device=device) < 1 - cfg.cond_dropout).to(dtype)
    x_t = apply_inpainting(schedule.q_sample(x0, t, noise), known_mask, x0)
    eps_hat = net(x_t, t, cond, keep)
    err = (eps_hat - noise) ** 2
    if known_mask is None:
        return err.mean()
    unknown = (~known_mask).expand(x0.shape).to(dtype)
    denom = unknown.sum().clamp(min=1) if reduction == "unknown" else float(err.numel())
    return (err * unknown).sum() / denom


def ddpm_sample(net: Callable, shape, schedule: DDPMSchedule, cfg: DDPMConfig, generator: torch.Generator,
                known_mask: torch.Tensor | None = None, known_values: torch.Tensor | None = None,
                cond: torch.Tensor | None = None, callback: Callable | None = None, grad: bool = False) -> torch.Tensor:
    """Decision Diffuser's ancestral sampler with inpainting and classifier-free guidance (module docstring).

    `net(x, t, cond, keep)` predicts eps; t is a (B,) long tensor of the step.  With `cond` (B, c) every step makes
    ONE call on 2B rows: [x, x], [t, t], [cond, cond], keep = [0] * B + [1] * B, and combines the halves as
    eps_u + w (eps_c - eps_u); without cond it calls net(x, t, None, None).  Known positions (bool `known_mask`
    and `known_values`, broadcastable to `shape`) are written before the loop and after every step;
    `callback(i, x)` runs after step i.  Float32 on the schedule's device (where `generator` must live).
    Without gradients unless `grad`: then the sample is the reparameterised one, differentiable w.r.t. whatever
    `net`'s conditioning depends on, its noise fixed by `generator`.
    """
    with torch.set_grad_enabled(grad):
        return _ddpm_sample(net, shape, schedule, cfg, generator, known_mask, known_values, cond, callback)


def _ddpm_sample(net, shape, schedule, cfg, generator, known_mask, known_values, cond, callback) -> torch.Tensor:
    cfg.validate()
    if schedule.steps != cfg.steps:
        raise ValueError(f"schedule has {schedule.steps} steps but cfg.steps is {cfg.steps}")
    device, dtype = schedule.device, torch.float32
    batch = shape[0]
    guided = cond is not None
    if guided:
        cond2 = torch.cat([cond, cond])
        keep2 = torch.cat([torch.zeros(batch, device=device, dtype=dtype), torch.ones(batch, device=device,
                                                                                      dtype=dtype)])
    x = cfg.noise_scale * torch.randn(shape, generator=generator, device=device, dtype=dtype)
    x = apply_inpainting(x, known_mask, known_values)
    for i in reversed(range(schedule.steps)):
        t = torch.full((batch,), i, device=device, dtype=torch.long)
        if guided:
            eps_u, eps_c = net(torch.cat([x, x]), torch.cat([t, t]), cond2, keep2).chunk(2)
            eps = eps_u + cfg.guidance * (eps_c - eps_u)
        else:
            eps = net(x, t, None, None)
        x0_hat = schedule.predict_start_from_noise(x, t, eps)
        if cfg.clip_denoised is not None:
            x0_hat = x0_hat.clamp(-cfg.clip_denoised, cfg.clip_denoised)
        mean, log_var = schedule.q_posterior(x0_hat, x, t)
        noise = cfg.noise_scale * torch.randn(shape, generator=generator, device=device, dtype=dtype)
        x = mean + (1.0 if i > 0 else 0.0) * (0.5 * log_var).exp() * noise
        x = apply_inpainting(x, known_mask, known_values)
        if callback is not None:
            callback(i, x)
    return x
