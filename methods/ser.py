"""`ser`: SynthER (Lu et al., NeurIPS 2023) -- an EDM diffusion model over flat transitions, sampled in batches.

Follows the authors' code (conglu1997/SynthER; claims S1-S9 of ../shared/reference/method-facts.md):
- A sample is one vector [s, a, r, s', terminal] (S1); every step of the data with its true s'.  The authors'
  input is D4RL's `qlearning_dataset`, which drops the last step of timeout-truncated episodes: so does this
  (`drop_timeouts`, default True).
- Per-dimension standardisation, (x - mean) / (std + 1e-5), statistics from the whole original dataset, the
  terminal dimension left out (mean 0, std 1) (S2; `blocks.normalize.ZScore`).
- Denoiser: SynthER's residual MLP (S3; `blocks.backbones.ResidualMLPDenoiser`): width 2048, 6 blocks of
  x + Linear(ReLU(x)), no LayerNorm, time embedding of 16 fixed random Fourier features (preset `w1024`: width
  1024, the authors' "lower width" config).
- EDM (S4, S5; `blocks.diffusion`): sigma_data 1, training sigmas log-normal(-1.2, 1.2) with EDM's loss weight;
  AdamW lr 3e-4, betas (0.9, 0.99), no weight decay, cosine decay over the steps, grad-norm clip 1.0; EMA 0.995
  every 10 steps through `ema-pytorch` (the package SynthER uses; its default warm-up applies, as theirs), and
  samples come from the EMA weights; 100k steps; batch 256 below 800k transitions, 1024 at or above (S6).
- Sampler: stochastic Heun, 128 steps, sigma 0.002..80, rho 7, churn 80 / 0.05 / 50 / 1.003; 5M samples, 100k
  per batch on the device (S7); terminal = 1 where the un-normalised value is > 0.5; nothing clipped (S8).  The
  share of generated actions outside the action space is recorded in the output's `meta.extra["ser"]`.

Options that deviate from the authors (defaults are the authors'):
- `drop_timeouts = False` keeps the last step of truncated episodes (its s' is known here).
- `clip_actions = True` clips generated actions to the action space (the authors do not; S8).
- `model_terminals = False` leaves the terminal out of the sample (then every generated step is non-terminal).
- `amp = "bf16"` runs training and sampling under bfloat16 autocast on the model's device (CUDA, or a CPU with
  bf16 matmuls; a speed option whose effect on speed and on the samples is measured by benchmarks/ser_amp.py in
  reports/ser-amp.md); the authors train in float32.  The loss, the optimiser and the sampler's arithmetic
  between network calls stay float32 (autocast covers the network only; its output is cast back).
- `batch_size > 0` overrides the data-size rule.
Ablation switches for the method's claims: `model_terminals`, `sample_steps` (sampler budget), `s_churn = 0`
(deterministic Heun), and the agent's mix: `--mix synthetic` (the authors' offline setting, S9: the agent sees
only synthetic data, with the observation scaler from the real data) against `--mix ratio` (real and synthetic).

Presets: `paper` (the defaults), `w1024`, and `cpu-smoke` / `cpu-small` (tiny widths and budgets, for tests and
CPU tables; every table that uses them says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.dataset import Dataset
from bench.errors import BenchError
from methods import AUGMENTERS
from methods.base import Augmenter, AugmenterConfig


@dataclass
class SERConfig(AugmenterConfig):
    ranges = {
        "width": "[1, 65536]", "depth": "[1, 64]", "dim_t": "[2, 8192]", "fourier_features": "[2, 1024]",
        "train_steps": "[1, 100000000]", "batch_size": "[0, 1048576]", "lr": "(0, 1]",
        "weight_decay": "[0, 1]", "grad_clip": "[0, inf)", "ema_decay": "[0, 1)", "ema_every": "[1, 100000]",
        "num_samples": "[1, 1000000000]", "sample_batch": "[1, 10000000]", "sample_steps": "[2, 10000]",
        "s_churn": "[0, inf)", "checkpoint_every": "[1, 100000000]",
    }
    width: int = 2048
    depth: int = 6
    dim_t: int = 128
    fourier_features: int = 16
    train_steps: int = 100_000
    batch_size: int = 0  # 0: the authors' rule (256 below 800k transitions, 1024 at or above)
    lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    ema_every: int = 10
    drop_timeouts: bool = True
    model_terminals: bool = True
    amp: str = "off"  # "off" or "bf16" (autocast on the device; a deviation, see the module doc)
    checkpoint_every: int = 5000
    # sampling only (changing them reuses the fitted model)
    num_samples: int = 5_000_000
    sample_batch: int = 100_000
    sample_steps: int = 128
    s_churn: float = 80.0
    clip_actions: bool = False

    def check(self, where: str) -> None:
        if self.amp not in ("off", "bf16"):
            raise BenchError(f"{where}: 'amp' must be 'off' or 'bf16', got '{self.amp}'")


PRESETS = {
    "paper": {},
    "w1024": {"width": 1024},
    "cpu-smoke": {"width": 64, "depth": 2, "dim_t": 32, "train_steps": 200, "batch_size": 128,
                  "num_samples": 2000, "sample_batch": 1000, "sample_steps": 16, "checkpoint_every": 100},
    "cpu-small": {"width": 256, "depth": 3, "dim_t": 64, "train_steps": 5000, "batch_size": 256,
                  "num_samples": 200_000, "sample_batch": 50_000, "sample_steps": 32},
}


@AUGMENTERS.register
class SynthER(Augmenter):
    name = "ser"
    config_class = SERConfig
    output = "transitions"
    presets = PRESETS
    sample_fields = ("num_samples", "sample_batch", "sample_steps", "s_churn", "clip_actions")

    # -- the data ---------------------------------------------------------------------------------------------
    def _inputs(self, ds: Dataset) -> np.ndarray:
        """(N, D) float32 rows [s, a, r, s', terminal?]; with `drop_timeouts`, the timeout steps left out."""
        keep = np.ones(len(ds), bool)
        if self.config.drop_timeouts:
            keep &= ~np.asarray(ds.timeouts, bool)
        parts = [np.asarray(ds.observations)[keep], np.asarray(ds.actions)[keep],
                 np.asarray(ds.rewards)[keep, None], np.asarray(ds.next_observations)[keep]]
        if self.config.model_terminals:
            parts.append(np.asarray(ds.terminals, np.float32)[keep, None])
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _model(self, dim: int):
        import torch

        from blocks.backbones import ResidualMLPDenoiser
        from blocks.diffusion import EDMPrecond

        c = self.config
        net = ResidualMLPDenoiser(dim, width=c.width, depth=c.depth, dim_t=c.dim_t,
                                  fourier_features=c.fourier_features,
                                  generator=torch.Generator().manual_seed(self.seed))
        return EDMPrecond(net).to(self.device)

    def _autocast(self):
        import contextlib

        import torch

        if self.config.amp == "bf16":
            return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- fit --------------------------------------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> None:
        import torch
        from ema_pytorch import EMA

        from blocks.diffusion import EDMConfig, edm_loss
        from blocks.normalize import ZScore

        c = self.config
        self.data = dataset
        x = self._inputs(dataset)
        n, dim = x.shape
        if n < 2:
            raise BenchError(f"ser: {n} usable transition(s) in '{dataset.meta.name}'; SynthER needs data")
        self.norm = ZScore.fit(x, exclude=(dim - 1,) if c.model_terminals else ())
        batch = c.batch_size or (1024 if n >= 800_000 else 256)
        model = self._model(dim)
        ema = EMA(model, beta=c.ema_decay, update_every=c.ema_every)
        opt = torch.optim.AdamW(model.parameters(), lr=c.lr, betas=(0.9, 0.99), weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.train_steps)
        gen = self.fit_generator(0x5E1)
        edm = EDMConfig()
        start = 0
        state = self.fit_checkpoint()
        if state is not None:  # an interrupted fit of this same model: go on from it
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            gen.set_state(state["generator"])
            start = state["step"]
        data = torch.as_tensor(self.norm.transform(x), device=self.device)  # uploaded once
        model.train()
        for step in range(start, c.train_steps):
            rows = torch.randint(n, (batch,), generator=gen, device=self.device)
            with self._autocast():
                loss = edm_loss(model, data[rows], edm, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
            opt.step()
            sched.step()
            ema.update()
            done = step + 1
            if done % c.checkpoint_every == 0 and done < c.train_steps:
                self.save_fit_checkpoint({"model": model.state_dict(), "ema": ema.state_dict(),
                                          "opt": opt.state_dict(), "sched": sched.state_dict(),
                                          "generator": gen.get_state(), "step": done})
            if done % 100 == 0 or done == c.train_steps:
                self.report(done, c.train_steps)
        self.ema_model = ema.ema_model.eval()
        self.dim, self.train_rows, self.batch = dim, n, batch

    def fitted_state(self) -> dict:
        return {"ema": self.ema_model.state_dict(), "norm": self.norm.to_state(), "dim": self.dim,
                "train_rows": self.train_rows, "batch": self.batch}

    def load_fitted(self, dataset: Dataset, state: dict) -> None:
        from blocks.normalize import ZScore

        self.data = dataset
        self.dim, self.train_rows, self.batch = state["dim"], state["train_rows"], state["batch"]
        self.norm = ZScore.from_state(state["norm"])
        self.ema_model = self._model(self.dim)
        self.ema_model.load_state_dict(state["ema"])
        self.ema_model.eval()

    # -- generate ---------------------------------------------------------------------------------------------
    def sample_normalised(self, n: int):
        """`n` samples in the model's (normalised) space, in batches of `sample_batch` on the device."""
        import torch

        from blocks.diffusion import EDMConfig, heun_sampler

        c = self.config
        edm = EDMConfig(steps=c.sample_steps, s_churn=c.s_churn)
        out = []
        for start in range(0, n, c.sample_batch):
            b = min(c.sample_batch, n - start)
            with torch.no_grad(), self._autocast():
                x = heun_sampler(lambda z, s, cond: self.ema_model(z, s, cond).float(), (b, self.dim), edm,
                                 self.torch_generator, device=self.device)
            out.append(x.float().cpu())
            self.report(start + b, n)
        return torch.cat(out).numpy()

    def generate(self) -> Dataset:
        ds, c = self.data, self.config
        x = self.norm.inverse(self.sample_normalised(c.num_samples))
        o = ds.observations.shape[1]
        a = ds.actions.shape[1]
        obs, act = x[:, :o], x[:, o:o + a]
        rew, nxt = x[:, o + a], x[:, o + a + 1:o + a + 1 + o]
        term = (x[:, -1] > 0.5) if c.model_terminals else np.zeros(len(x), bool)
        low, high = ds.meta.action_space.low, ds.meta.action_space.high
        outside = float(((act < np.asarray(low)) | (act > np.asarray(high))).any(1).mean()) if low and high \
            else math.nan
        if c.clip_actions and low and high:
            act = np.clip(act, low, high)
        self.stats = {"actions_outside_space": outside, "terminal_share": float(term.mean()),
                      "train_rows": self.train_rows, "batch_size": self.batch}
        return self.transitions(ds, None, obs, nxt, actions=act, rewards=rew, terminals=term)

    def provenance(self) -> dict:
        return {**super().provenance(), "ser": getattr(self, "stats", {})}
