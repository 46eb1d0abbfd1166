"""`tatu`: TATU (Zhang et al., ECAI 2023) -- short ensemble-model rollouts from dataset states, truncated when the
accumulated uncertainty grows; the authors' model-free pipeline (the one paired with TD3+BC / CQL / BCQ).

Follows pipixiaqishi1/TATU (`train_tatu_modelfree.py`, `aug_algo.py`; claims T1-T8 of
../shared/reference/method-facts.md):
- Dynamics: the shared Gaussian ensemble (`blocks.dynamics`, T1): 7 members / 5 elites, 4 x 200 Swish, predicting
  s' - s and r, trained as the authors train it, no input normalisation.
- Rollout policy (T2): a BCQ-style conditional VAE (encoder and decoder 2 x 750 ReLU, latent 2 x action_dim,
  decoder max_action * tanh), reconstruction MSE + 0.5 KL, 100k iterations at batch 256, Adam's default lr;
  actions decoded with z ~ N(0, I) clipped to [-0.5, 0.5].
- Uncertainty (T4): u(s, a) = max over elites of || elite mean s' - elites' mean s' ||, next-state dims, raw
  units.  max_disc (T5) = the largest u over every (s, a) of the original data.
- Rollouts (T3, T5, T6): made once, before policy training: (2N) // (5000 H) batches of 5000 start states drawn
  uniformly from the data, horizon H = 5; s' and r sampled from one random elite's Gaussian; a step is kept while
  the running sum of u is strictly below max_disc / pessimism (the sum only grows, so a rollout's kept steps are
  a prefix); the stored reward is r - lambda * u.  Defaults from the authors' hopper-medium-replay script
  (T7): H 5, lambda 1.5, pessimism 3.5; preset `argparse` has the scripts' argparse defaults (lambda 1.0,
  pessimism 2.0).  The authors train the agent on 70 % real / 30 % model data per batch: that is the run's mix
  (`--mix ratio --ratio 0.3`), not a field here.
- Output: `trajectories`, one segment per rollout (its kept prefix), provenance = the start state's episode and
  step; the histogram of kept lengths is in `meta.extra["tatu"]`.

Deviations (named options; defaults as the authors unless said):
- `terminations` = "env" (NOT the authors, whose model-free rollouts always store done = 0): a rollout ends at
  the environment's termination rule where one exists (Hopper: height > 0.7, |angle| < 0.2, |s[1:]| < 100;
  Walker2d: 0.8 < height < 2, |angle| < 1), with that step stored as terminal; mazes and HalfCheetah have none.
  "never" is the authors' behaviour.
- `ensemble_normalize_inputs` z-scores the ensemble's inputs (the authors do not).
- `holdout_leak` reproduces the authors' indexing of the full array with training positions (off).
Ablation switches: `pessimism` (truncation: a huge value keeps everything up to H), `penalty` = 0 (no reward
penalty), `horizon`.
Everything is batched on the device: one tensor op per rollout step for all 5000 rollouts of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.dataset import Dataset
from bench.errors import BenchError
from methods import AUGMENTERS
from methods.base import Augmenter, AugmenterConfig


@dataclass
class TATUConfig(AugmenterConfig):
    ranges = {
        "horizon": "[1, 1000]", "penalty": "[0, inf)", "pessimism": "(0, inf)", "start_batch": "[1, 10000000]",
        "buffer_factor": "(0, 1000]", "members": "[1, 100]", "elites": "[1, 100]", "ensemble_width": "[1, 65536]",
        "ensemble_layers": "[1, 32]", "ensemble_epochs": "[1, 100000]", "vae_width": "[1, 65536]",
        "vae_iterations": "[1, 100000000]", "vae_batch": "[1, 1048576]", "vae_lr": "(0, 1]",
        "latent_clip": "(0, inf)", "kl_weight": "[0, inf)",
    }
    horizon: int = 5
    penalty: float = 1.5  # lambda: stored reward r - lambda * u
    pessimism: float = 3.5  # threshold = max_disc / pessimism
    start_batch: int = 5000
    buffer_factor: float = 2.0  # (buffer_factor * N) // (start_batch * horizon) batches of rollouts
    terminations: str = "env"  # "env" or "never" (the authors)
    members: int = 7
    elites: int = 5
    ensemble_width: int = 200
    ensemble_layers: int = 4
    ensemble_epochs: int = 200
    ensemble_normalize_inputs: bool = False
    holdout_leak: bool = False
    vae_width: int = 750
    vae_iterations: int = 100_000
    vae_batch: int = 256
    vae_lr: float = 1e-3  # Adam's default, as the authors
    latent_clip: float = 0.5
    kl_weight: float = 0.5

    def check(self, where: str) -> None:
        if self.terminations not in ("env", "never"):
            raise BenchError(f"{where}: 'terminations' must be 'env' or 'never', got '{self.terminations}'")
        if self.elites > self.members:
            raise BenchError(f"{where}: 'elites' ({self.elites}) cannot exceed 'members' ({self.members})")


PRESETS = {
    "paper": {},
    "argparse": {"penalty": 1.0, "pessimism": 2.0},
    # The reduced CPU budget of reports/tatu.md and sweeps/tatu-pointmaze-cpu.yaml: everything as `paper` but the
    # ensemble's epochs (the authors: up to 200 with early stopping) and the VAE's iterations (the authors: 100k).
    "cpu-small": {"ensemble_epochs": 5, "vae_iterations": 5000},
    "cpu-smoke": {"members": 3, "elites": 2, "ensemble_width": 32, "ensemble_layers": 2, "ensemble_epochs": 3,
                  "vae_width": 64, "vae_iterations": 200, "start_batch": 500, "buffer_factor": 1.0},
}


def termination_rule(env_id: str | None):
    """The environment's termination as a function of next states (torch, (B, d) -> (B,) bool), or None."""
    import torch

    name = (env_id or "").split("-")[0]
    if name == "Hopper":
        def hopper(s2):
            healthy = (s2[:, 0] > 0.7) & (s2[:, 1].abs() < 0.2) & (s2[:, 1:].abs() < 100).all(1)
            return ~(healthy & torch.isfinite(s2).all(1))
        return hopper
    if name == "Walker2d":
        def walker(s2):
            healthy = (s2[:, 0] > 0.8) & (s2[:, 0] < 2.0) & (s2[:, 1] > -1.0) & (s2[:, 1] < 1.0)
            return ~(healthy & torch.isfinite(s2).all(1))
        return walker
    return None


class VAE:
    """BCQ's conditional VAE (built lazily so that importing this module needs no torch)."""

    @staticmethod
    def build(obs_dim: int, act_dim: int, width: int, max_action: float, generator):
        import torch
        from torch import nn

        from blocks.nn import seeded_init

        class _VAE(nn.Module):
            def __init__(self):
                super().__init__()
                latent = 2 * act_dim
                with seeded_init(generator):
                    self.e1, self.e2 = nn.Linear(obs_dim + act_dim, width), nn.Linear(width, width)
                    self.mean, self.log_std = nn.Linear(width, latent), nn.Linear(width, latent)
                    self.d1, self.d2 = nn.Linear(obs_dim + latent, width), nn.Linear(width, width)
                    self.d3 = nn.Linear(width, act_dim)
                self.latent, self.max_action = latent, max_action

            def forward(self, s, a, noise):
                h = torch.relu(self.e2(torch.relu(self.e1(torch.cat([s, a], 1)))))
                mean, log_std = self.mean(h), self.log_std(h).clamp(-4, 15)  # BCQ's clamp
                std = log_std.exp()
                return self.decode(s, mean + std * noise), mean, std

            def decode(self, s, z):
                h = torch.relu(self.d2(torch.relu(self.d1(torch.cat([s, z], 1)))))
                return self.max_action * torch.tanh(self.d3(h))

        return _VAE()


@AUGMENTERS.register
class TATU(Augmenter):
    name = "tatu"
    config_class = TATUConfig
    output = "trajectories"
    presets = PRESETS
    sample_fields = ("horizon", "penalty", "pessimism", "start_batch", "buffer_factor", "terminations")

    def fit(self, dataset: Dataset) -> None:
        from blocks.dynamics import EnsembleConfig, GaussianEnsemble

        c = self.config
        self.data = dataset
        obs, act = np.asarray(dataset.observations), np.asarray(dataset.actions)
        if len(obs) < 10:
            raise BenchError(f"tatu: '{dataset.meta.name}' has {len(obs)} transitions; TATU needs data")
        gen = self.fit_generator(0x7A7)
        cfg = EnsembleConfig(members=c.members, elites=c.elites, hidden=(c.ensemble_width,) * c.ensemble_layers,
                             max_epochs=c.ensemble_epochs, normalize_inputs=c.ensemble_normalize_inputs,
                             holdout_leak=c.holdout_leak)
        self.ensemble = GaussianEnsemble(obs.shape[1], act.shape[1], cfg)
        total = c.ensemble_epochs + c.vae_iterations
        self.ensemble.fit(obs, act, dataset.next_observations, dataset.rewards, generator=gen, device=self.device,
                          log=lambda row: self.report(row["epoch"], total))
        self.vae = self._train_vae(obs, act, gen, lambda i: self.report(c.ensemble_epochs + i, total))
        self.max_disc = float(self.ensemble.disagreement(obs, act).max())

    def _max_action(self) -> float:
        high = self.data.meta.action_space.high
        return float(np.max(np.abs(high))) if high else 1.0

    def _train_vae(self, obs, act, gen, progress):
        import torch

        c = self.config
        vae = VAE.build(obs.shape[1], act.shape[1], c.vae_width, self._max_action(), gen).to(self.device)
        opt = torch.optim.Adam(vae.parameters(), lr=c.vae_lr)
        s_all = torch.as_tensor(np.array(obs, np.float32), device=self.device)
        a_all = torch.as_tensor(np.array(act, np.float32), device=self.device)
        for i in range(c.vae_iterations):
            rows = torch.randint(len(s_all), (c.vae_batch,), generator=gen, device=self.device)
            s, a = s_all[rows], a_all[rows]
            noise = torch.randn((len(rows), vae.latent), generator=gen, device=self.device)
            recon, mean, std = vae(s, a, noise)
            kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
            loss = torch.nn.functional.mse_loss(recon, a) + c.kl_weight * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (i + 1) % 1000 == 0 or i + 1 == c.vae_iterations:
                progress(i + 1)
        return vae.eval()

    def fitted_state(self) -> dict:
        return {"ensemble": self.ensemble.to_state(), "vae": self.vae.state_dict(), "max_disc": self.max_disc}

    def load_fitted(self, dataset: Dataset, state: dict) -> None:
        import torch

        from blocks.dynamics import GaussianEnsemble

        self.data = dataset
        self.ensemble = GaussianEnsemble.from_state(state["ensemble"], self.device)
        obs_dim, act_dim = dataset.observations.shape[1], dataset.actions.shape[1]
        self.vae = VAE.build(obs_dim, act_dim, self.config.vae_width, self._max_action(),
                             torch.Generator().manual_seed(0)).to(self.device)
        self.vae.load_state_dict(state["vae"])
        self.vae.eval()
        self.max_disc = float(state["max_disc"])

    # -- rollouts ---------------------------------------------------------------------------------------------
    def policy(self, s):
        import torch

        z = torch.randn((len(s), self.vae.latent), generator=self.torch_generator, device=self.device)
        with torch.no_grad():
            return self.vae.decode(s, z.clamp(-self.config.latent_clip, self.config.latent_clip))

    def rollout(self, s0):
        """(obs, act, reward, next_obs, terminal, kept), each (B, H, ...): one batch of rollouts from s0."""
        import torch

        c = self.config
        threshold = self.max_disc / c.pessimism
        done_fn = termination_rule(self.data.meta.simulator.env_id) if c.terminations == "env" else None
        b = len(s0)
        acc = torch.zeros(b, device=self.device)
        alive = torch.ones(b, dtype=torch.bool, device=self.device)
        out = {k: [] for k in ("obs", "act", "rew", "next", "term", "kept")}
        s = s0
        for _ in range(c.horizon):  # one tensor op per step for the whole batch
            a = self.policy(s)
            s2, r = self.ensemble.sample(s, a, self.torch_generator)
            u = self.ensemble.disagreement(s, a)
            acc = acc + u
            kept = alive & (acc < threshold)
            term = done_fn(s2) if done_fn else torch.zeros(b, dtype=torch.bool, device=self.device)
            for k, v in (("obs", s), ("act", a), ("rew", r - c.penalty * u), ("next", s2), ("term", term & kept),
                         ("kept", kept)):
                out[k].append(v)
            alive = kept & ~term
            s = s2
        return {k: torch.stack(v, 1) for k, v in out.items()}

    def generate(self) -> Dataset:
        import torch

        c, ds = self.config, self.data
        n = len(ds)
        batches = max(1, int(c.buffer_factor * n) // (c.start_batch * c.horizon))
        obs_all = torch.as_tensor(np.array(ds.observations, np.float32), device=self.device)
        parts = {k: [] for k in ("obs", "act", "rew", "next", "term")}
        starts, lengths = [], []
        for i in range(batches):
            rows = torch.randint(n, (c.start_batch,), generator=self.torch_generator, device=self.device)
            roll = self.rollout(obs_all[rows])
            mask = roll["kept"]
            for k in parts:
                parts[k].append(roll[k][mask].cpu())  # rollout-major: each rollout's kept prefix in order
            lengths.append(mask.sum(1).cpu())
            starts.append(rows.cpu())
            self.report(i + 1, batches)
        lengths_t, starts_t = torch.cat(lengths).numpy(), torch.cat(starts).numpy()
        hist = np.bincount(lengths_t, minlength=c.horizon + 1)
        self.stats = {"rollouts": int(len(lengths_t)), "kept_length_counts": hist.tolist(),
                      "max_disc": self.max_disc, "threshold": self.max_disc / c.pessimism,
                      "terminations": c.terminations if termination_rule(ds.meta.simulator.env_id) else
                      "none (no termination rule for this environment)"}
        keep = lengths_t > 0
        if not keep.any():
            raise BenchError("tatu: every rollout was truncated at its first step (the threshold max_disc / "
                             "pessimism is below every step's uncertainty); lower 'pessimism'")
        offsets = np.asarray(ds.episode_offsets)
        episode = np.searchsorted(offsets, starts_t, side="right") - 1
        cat = {k: torch.cat(v).numpy() for k, v in parts.items()}
        return self.trajectories(ds, observations=cat["obs"], actions=cat["act"], rewards=cat["rew"],
                                 next_observations=cat["next"], terminals=cat["term"], lengths=lengths_t[keep],
                                 source_episode=episode[keep], source_step=(starts_t - offsets[episode])[keep])

    def provenance(self) -> dict:
        return {**super().provenance(), "tatu": getattr(self, "stats", {})}
