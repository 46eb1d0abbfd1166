"""`astro`: ASTRO (Yu et al., arXiv 2511.23442) -- stitch targets chosen by a temporal distance representation,
action sequences planned by a diffusion transformer and corrected by Rollout Deviation Feedback from a learned
dynamics model; the stitch's states are the dynamics model's rollout of the planned actions.

ASTRO has no public code, and only its abstract and third-party summaries can be read
(shared/reference/astro-facts.md).  This is the first public implementation; the components are one file each:
1. `methods/astro/tdr.py`: the TDR, GAS's recipe (V(s, g) = -||phi(s) - phi(g)||, expectile TD on dataset
   triples, two heads, EMA target).
2. `methods/astro/targets.py`: target selection (a TDR window, reachable and novel; other trajectories only; the
   best return-to-go preferred; an optional geometric-consistency filter, ASTRO's Delta_thresh).
3. `methods/astro/dynamics.py`: the dynamics model (a diffusion transformer; the shared ensemble as an option).
4.-5. `methods/astro/planner.py`: the action planner with the masked stitching sequence and the feedback.
6. This file: the pipeline, qualification and output.

Choices made here (ASTRO publishes none of them), each a config option:
- Sources: rows in the top `source_fraction` (0.3, DiffStitch's share) by discounted return-to-go (`discount`),
  `sources_per_iteration` (64, as DiffStitch) drawn uniformly per iteration.  Candidate targets: `candidates`
  (512, as DiffStitch) rows drawn per source from the whole dataset (without replacement up to 65,536 rows;
  above, with replacement: repeats are rare and an S x N draw would not fit in memory) (ASTRO's point is
  targets beyond the behaviour policy's best windows, so no top-2 % pool; the return preference of the
  selection still prefers the best).
- Stitch length: k = ceil(`length_scale` x TDR distance) clamped to [min_length, horizon]: the TDR distance
  approximates the number of steps (`fixed_length` > 0: always k steps, an ablation).  The TDR distance of the
  chosen pair whatever `target_metric` chose it, so the Euclidean and random ablations differ from ASTRO in the
  targets only (until 2026-12-06 the Euclidean ablation took k from the raw distance: 3-9 steps for targets
  10-40 steps away, which confounded its row in reports/astro.md).  The window [10, 40] with
  horizon 40 keeps ASTRO's stitches as long as DiffStitch's (10-39 steps).
- `plans` (1): action plans sampled per (source, target) pair, in one batch; the pair keeps the plan whose
  rollout ends nearest the target (best of N, a harness option: ASTRO describes one plan per pair).
- `join` = "target": the stitch's last next state is the target state itself (the stitch then continues into
  the target's trajectory; the joining step's model error is what the reach check bounds); "reached": the
  dynamics model's own last state.
- Qualification (ASTRO: "as DiffStitch", extended by the reach check), in this order, every reason counted:
  `reach` (the rollout ends farther than `reach_tol` typical steps from the target: max over dimensions of
  |s^_k - s_k| / sigma, sigma the std of the one-step state change over the data), `termination` (the
  environment's failure rule on the stitch's states), `dynamics` (a second, independent one-step model, the
  shared Gaussian ensemble of DiffStitch, disagrees with a step by more than `delta` typical steps, max over
  dimensions; `delta_quantile` > 0 (default 0.99) sets delta from the ensemble's own error on real
  transitions; with `dynamics = "ensemble"` the checker is that model, so the check only catches the joining
  step), `return` (the source's return-to-go above the stitch's sum_i g^i r_i + g^k x the target's).
  `no_target` counts the sources without a target; `no_target_inconsistent` (in the stats) the part of them
  that had candidates in the window but lost them all to the consistency filter (`consistency`).
- The components' own choices, settable here (each explained in its file): `tdr_geometric_p` and
  `tdr_normalize_inputs` (tdr.py), `dyn_sample_noise` and `dyn_clip_denoised` (dynamics.py), `consistency_scale`
  and `window_units` = "steps" (targets.py's `tdr_discount`: the window in true steps, mapped through the TDR's
  discount, and the stitch length mapped back, d = log(1 - (1 - g) phi) / log g; default "phi", the TDR distance
  as is for both).
- Rewards and terminals: as DiffStitch's `rewards` (exact for OGBench maze singletasks, else the ensemble's).
- Output: `trajectories`, each accepted stitch a segment of k steps (`emit = "full"`: with the source's prefix
  and the target's suffix), assembled by `methods.diffstitch.assemble_stitches`.
Ablations (the paper's claims as switches; all sampling fields, so they share one fit): `target_metric`
"euclidean" or "random" (instead of "tdr"), `feedback = "off"`, `actions = "inverse"` (DiffStitch-style: the
state path is the rollout with its endpoint gap spread linearly over the steps so that it ends exactly at the
target, and the actions are an inverse-dynamics MLP's, trained on the data; states and actions no longer agree
by construction), `qualify = False`.  The ablation's inverse model is `blocks.nn.InverseDynamics`, DiffStitch's;
`inverse_input` chooses its input as DiffStitch's option does: "pair" (default: [z(s), z(s')] with the planner's
state normaliser) or "delta" (raw [z(s), (s' - s) / std], far more accurate on a point maze:
reports/diffstitch-inverse.md).

Presets: `paper` (every size the defaults; TDR at GAS's), `cpu-small` (minutes on a 2-core CPU, for CPU tables,
named in them), `cpu-smoke` (tests).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from bench.dataset import Dataset
from bench.errors import BenchError
from methods import AUGMENTERS
from methods.base import Augmenter, AugmenterConfig

REASONS = ("no_target", "reach", "termination", "dynamics", "return")


@dataclass
class AstroConfig(AugmenterConfig):
    ranges = {
        "tdr_hidden": "[1, 65536]", "tdr_latent": "[1, 4096]", "tdr_steps": "[0, 100000000]",
        "tdr_batch": "[1, 1048576]",
        "tdr_expectile": "(0, 1)", "tdr_lr": "(0, 1]", "tdr_tau": "(0, 1]", "horizon": "[2, 1000]",
        "min_length": "[1, 1000]", "width": "[2, 8192]", "depth": "[1, 64]", "heads": "[1, 64]",
        "diffusion_steps": "[1, 10000]", "train_steps": "[0, 100000000]", "batch_size": "[1, 1048576]",
        "lr": "(0, 1]", "mask_ratio": "[0, 1]", "feedback_train": "[0, 1]", "dyn_width": "[2, 8192]",
        "dyn_depth": "[1, 64]", "dyn_heads": "[1, 64]", "dyn_diffusion_steps": "[1, 10000]",
        "dyn_train_steps": "[0, 100000000]", "members": "[1, 100]", "elites": "[1, 100]",
        "ensemble_width": "[1, 65536]", "ensemble_layers": "[1, 32]", "ensemble_epochs": "[1, 100000]",
        "inv_width": "[1, 65536]", "inv_steps": "[0, 100000000]", "checkpoint_every": "[1, 100000000]",
        "discount": "(0, 1]", "d_min": "[0, inf)", "d_max": "(0, inf)", "candidates": "[1, 1000000]",
        "temperature": "(0, inf)", "consistency": "[1, inf)", "source_fraction": "(0, 1]",
        "sources_per_iteration": "[1, 1000000]", "length_scale": "(0, inf)", "fixed_length": "[0, 1000]",
        "feedback_every": "[1, 10000]", "plans": "[1, 1024]", "guidance_scale": "[0, inf)", "noise_scale": "[0, inf)",
        "reach_tol": "(0, inf)", "delta": "(0, inf)", "delta_quantile": "[0, 1)", "budget": "[1, 1000000000]",
        "max_iterations": "[1, 100000000]", "tdr_geometric_p": "(0, 1]", "dyn_sample_noise": "[0, inf)",
        "dyn_clip_denoised": "(0, inf)", "consistency_scale": "(0, inf)",
    }
    # options made settable here after runs were archived: at these values a config keeps its old run id
    added_later = {"tdr_geometric_p": None, "tdr_normalize_inputs": False, "dyn_sample_noise": 1.0,
                   "dyn_clip_denoised": 10.0, "consistency_scale": None, "window_units": "phi"}
    # -- TDR (fit) --
    tdr_hidden: tuple[int, ...] = (512, 512, 512)
    tdr_latent: int = 32
    tdr_steps: int = 1_000_000
    tdr_batch: int = 1024
    tdr_expectile: float = 0.999
    tdr_lr: float = 3e-4
    tdr_tau: float = 0.005
    tdr_geometric_p: float | None = None  # trajectory-goal offsets; None: 1 - discount (GAS); tdr.py's doc
    tdr_normalize_inputs: bool = False  # True: z-scored observations (GAS: raw); tdr.py's doc
    # -- the planner (fit) --
    horizon: int = 40
    min_length: int = 1
    width: int = 256
    depth: int = 4
    heads: int = 4
    diffusion_steps: int = 20
    train_steps: int = 100_000
    batch_size: int = 256
    lr: float = 3e-4
    mask_ratio: float = 1.0
    feedback_train: float = 0.5
    # -- the dynamics model (fit) --
    dynamics: str = "dit"  # "dit" (ASTRO) or "ensemble"
    dyn_width: int = 256
    dyn_depth: int = 4
    dyn_heads: int = 4
    dyn_diffusion_steps: int = 20
    dyn_train_steps: int = 100_000
    dyn_sample_noise: float = 1.0  # the DiT's DDPM noise scale at rollout (dynamics.py's doc; the planner trains
    dyn_clip_denoised: float | None = 10.0  # with these rollouts, so both are fit fields); None: no clip
    # -- the checker / reward ensemble and the inverse model of the ablation (fit) --
    members: int = 7
    elites: int = 5
    ensemble_width: int = 200
    ensemble_layers: int = 4
    ensemble_epochs: int = 200
    inv_width: int = 256
    inv_steps: int = 20_000
    inverse_input: str = "pair"  # "pair" ([z(s), z(s')]) or "delta" (raw [z(s), ds / std]); module doc
    checkpoint_every: int = 5000
    discount: float = 0.99
    # -- stitching (sampling only: changing these reuses the fit) --
    target_metric: str = "tdr"  # "tdr", or the ablations "euclidean" and "random"
    d_min: float = 10.0
    d_max: float = 40.0
    candidates: int = 512
    prefer: str = "return"
    temperature: float = 1.0
    consistency: float | None = None  # ASTRO's Delta_thresh (off by default)
    consistency_scale: float | None = None  # kappa, TDR steps per raw unit; None: fitted per batch (targets.py)
    window_units: str = "phi"  # "phi": [d_min, d_max] against the TDR distance as is; "steps": mapped through
    # the TDR's discount to its discounted units (targets.py's `tdr_discount`)
    source_fraction: float = 0.3
    sources_per_iteration: int = 64
    length_scale: float = 1.0
    fixed_length: int = 0
    feedback: str = "condition"  # "condition", "guidance", "both", or the ablation "off"
    feedback_every: int = 1
    plans: int = 1  # action plans sampled per (source, target); the one that ends nearest the target is kept
    guidance_scale: float = 1.0
    noise_scale: float = 1.0
    actions: str = "planned"  # "planned", or the ablation "inverse"
    join: str = "target"  # "target" or "reached"
    reach_tol: float = 1.0
    delta: float = 1.0
    delta_quantile: float = 0.99
    qualify: bool = True
    check_return: bool = True
    rewards: str = "auto"  # "auto", "model" or "exact"
    emit: str = "bridge"  # "bridge" or "full"
    budget: int = 2_000_000
    max_iterations: int = 300_000

    def __post_init__(self):
        if isinstance(self.tdr_hidden, list):
            self.tdr_hidden = tuple(self.tdr_hidden)

    def check(self, where: str) -> None:
        choices = {"dynamics": ("dit", "ensemble"), "target_metric": ("tdr", "euclidean", "random"),
                   "prefer": ("return", "softmax", "uniform"), "feedback": ("condition", "guidance", "both", "off"),
                   "actions": ("planned", "inverse"), "join": ("target", "reached"),
                   "rewards": ("auto", "model", "exact"), "emit": ("bridge", "full"),
                   "inverse_input": ("pair", "delta"), "window_units": ("phi", "steps")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise BenchError(f"{where}: '{key}' must be one of {', '.join(allowed)}, got '{getattr(self, key)}'")
        if not self.tdr_hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.tdr_hidden):
            raise BenchError(f"{where}: 'tdr_hidden' must be a list of positive integers")
        if self.min_length > self.horizon or self.fixed_length > self.horizon:
            raise BenchError(f"{where}: 'min_length' and 'fixed_length' must not exceed 'horizon' ({self.horizon})")
        if self.window_units == "steps" and self.discount >= 1:
            raise BenchError(f"{where}: 'window_units' steps maps steps through the TDR's discount, which must be < 1")
        if self.d_min > self.d_max:
            raise BenchError(f"{where}: the target window needs d_min <= d_max, got [{self.d_min}, {self.d_max}]")
        if self.elites > self.members:
            raise BenchError(f"{where}: 'elites' ({self.elites}) cannot exceed 'members' ({self.members})")
        for w, h, name in ((self.width, self.heads, "width"), (self.dyn_width, self.dyn_heads, "dyn_width")):
            if w % 2 or w % h:
                raise BenchError(f"{where}: '{name}' ({w}) must be even and divisible by its heads ({h})")


_SMALL = {"tdr_hidden": (128, 128), "tdr_steps": 20_000, "tdr_batch": 128, "tdr_expectile": 0.9, "tdr_lr": 3e-3,
          "tdr_tau": 0.05, "width": 64, "depth": 2, "heads": 2, "diffusion_steps": 10, "train_steps": 4000,
          "dyn_width": 64, "dyn_depth": 2, "dyn_heads": 2, "dyn_diffusion_steps": 5, "dyn_train_steps": 4000,
          "members": 5, "elites": 3, "ensemble_epochs": 3, "inv_steps": 2000, "checkpoint_every": 500,
          "budget": 20_000, "max_iterations": 200}
PRESETS = {
    "paper": {},
    # minutes on a 2-core CPU: the TDR of reports/astro-tdr.md (128 x 2, expectile 0.9, 20k steps), DiTs of
    # width 64 and depth 2 with 10 (planner) / 5 (dynamics) denoising steps and 4,000 training steps each, a
    # 5 / 3 ensemble of 3 epochs, a 20,000-transition budget.  For CPU tables, which name it.
    "cpu-small": _SMALL,
    "cpu-smoke": {**_SMALL, "tdr_hidden": (32, 32), "tdr_latent": 8, "tdr_steps": 200, "tdr_batch": 64,
                  "horizon": 12, "width": 16, "depth": 1, "heads": 2, "diffusion_steps": 4, "train_steps": 40,
                  "batch_size": 32, "dyn_width": 16, "dyn_depth": 1, "dyn_heads": 2, "dyn_diffusion_steps": 3,
                  "dyn_train_steps": 40, "members": 3, "elites": 2, "ensemble_width": 32, "ensemble_layers": 2,
                  "ensemble_epochs": 2, "inv_width": 32, "inv_steps": 40, "checkpoint_every": 20, "d_min": 0.0,
                  "d_max": 100.0, "candidates": 64, "sources_per_iteration": 16, "budget": 150, "max_iterations": 6,
                  # every sampling option live at this size (the contract test changes each one): the ensemble
                  # dynamics with both feedbacks, softmax preference; tolerances that a 40-step model's stitches
                  # pass about 70 % of the time
                  "dynamics": "ensemble", "feedback": "both", "prefer": "softmax", "reach_tol": 80.0,
                  "delta_quantile": 0.0, "delta": 1e3},
}


def discounted_rtg(rewards: np.ndarray, offsets: np.ndarray, discount: float) -> np.ndarray:
    """The discounted return-to-go of every row within its episode (one vector operation per time step)."""
    offsets = np.asarray(offsets, np.int64)
    lengths = np.diff(offsets)
    n, T = len(lengths), int(lengths.max())
    ep = np.repeat(np.arange(n), lengths)
    t = np.arange(len(rewards)) - offsets[ep]
    r = np.zeros((n, T + 1))
    r[ep, t] = rewards
    for j in range(T - 1, -1, -1):
        r[:, j] += discount * r[:, j + 1]
    return r[ep, t]


@AUGMENTERS.register
class Astro(Augmenter):
    name = "astro"
    config_class = AstroConfig
    output = "trajectories"
    presets = PRESETS
    sample_fields = ("target_metric", "d_min", "d_max", "candidates", "prefer", "temperature", "consistency",
                     "consistency_scale", "window_units", "source_fraction", "sources_per_iteration", "length_scale",
                     "fixed_length", "feedback", "feedback_every", "plans", "guidance_scale", "noise_scale", "actions",
                     "join", "reach_tol", "delta", "delta_quantile", "qualify", "check_return", "rewards", "emit",
                     "budget", "max_iterations")
    limit_fields = ("budget", "max_iterations")

    # -- fit --------------------------------------------------------------------------------------------------
    def _configs(self):
        from methods.astro.dynamics import DynamicsConfig
        from methods.astro.planner import PlannerConfig
        from methods.astro.tdr import TDRConfig

        c = self.config
        tdr = TDRConfig(hidden=tuple(c.tdr_hidden), latent=c.tdr_latent, steps=c.tdr_steps, batch_size=c.tdr_batch,
                        expectile=c.tdr_expectile, lr=c.tdr_lr, tau=c.tdr_tau, discount=c.discount,
                        geometric_p=c.tdr_geometric_p, normalize_inputs=c.tdr_normalize_inputs,
                        log_every=max(1, min(1000, c.tdr_steps // 20 or 1)))
        dyn = DynamicsConfig(kind=c.dynamics, horizon=c.horizon, width=c.dyn_width, depth=c.dyn_depth,
                             heads=c.dyn_heads, diffusion_steps=c.dyn_diffusion_steps, train_steps=c.dyn_train_steps,
                             batch_size=c.batch_size, lr=c.lr, members=c.members, elites=c.elites,
                             ensemble_width=c.ensemble_width, ensemble_layers=c.ensemble_layers,
                             ensemble_epochs=c.ensemble_epochs, sample_noise=c.dyn_sample_noise,
                             clip_denoised=c.dyn_clip_denoised)
        plan = PlannerConfig(horizon=c.horizon, min_length=c.min_length, width=c.width, depth=c.depth, heads=c.heads,
                             diffusion_steps=c.diffusion_steps, train_steps=c.train_steps, batch_size=c.batch_size,
                             lr=c.lr, mask_ratio=c.mask_ratio, feedback_train=c.feedback_train,
                             noise_scale=c.noise_scale, feedback=c.feedback, feedback_every=c.feedback_every,
                             guidance_scale=c.guidance_scale)
        return tdr, dyn, plan

    def fit(self, dataset: Dataset) -> None:

        from methods.astro.dynamics import DynamicsModel
        from methods.astro.planner import ActionPlanner
        from methods.astro.tdr import TDR

        c = self.config
        tdr_cfg, dyn_cfg, plan_cfg = self._configs()
        d, a = dataset.observations.shape[1], dataset.actions.shape[1]
        gen = self.fit_generator(0xA5)
        ens_total = 0 if c.dynamics == "ensemble" else c.ensemble_epochs
        total = c.tdr_steps + c.dyn_train_steps + ens_total + c.train_steps + c.inv_steps
        state = self.fit_checkpoint() or {}
        if "generator" in state:
            gen.set_state(state["generator"])

        def save(**parts):
            state.update(parts, generator=gen.get_state())
            self.save_fit_checkpoint(state)

        done = 0
        if "tdr" in state:
            self.tdr = TDR.from_state(state["tdr"], device=self.device)
        else:
            self.tdr = TDR(tdr_cfg)
            self.tdr.fit(dataset, gen, device=self.device, progress=lambda r: self.report(r["step"], total))
            save(tdr=self.tdr.to_state())
        done += c.tdr_steps
        if "dynamics" in state:
            self.dynamics = DynamicsModel.from_state(state["dynamics"], device=self.device)
        else:
            self.dynamics = DynamicsModel(dyn_cfg, d, a)
            self.dynamics.fit(dataset, gen, device=self.device,
                              progress=lambda i, n, base=done: self.report(base + i, total))
            save(dynamics=self.dynamics.to_state())
        done += c.dyn_train_steps
        if "checker" in state:
            self._set_checker(state["checker"])
        else:
            self._fit_checker(dataset, gen, lambda e, base=done: self.report(base + e, total))
            save(checker=self._checker_state())
        done += ens_total
        if "planner" in state:
            self.planner = ActionPlanner.from_state(state["planner"], device=self.device)
        else:
            self.planner = ActionPlanner(plan_cfg, d, a)
            self.planner.fit(dataset, self.dynamics, gen, device=self.device,
                             progress=lambda i, n, base=done: self.report(base + i, total),
                             state=state.get("planner_progress"),
                             checkpoint=lambda s: save(planner_progress=s), checkpoint_every=c.checkpoint_every)
            state.pop("planner_progress", None)
            save(planner=self.planner.to_state())
        done += c.train_steps
        if "inverse" in state:
            self.inverse = self._inverse_net(d, a)
            self.inverse.load_state_dict(state["inverse"])
        else:
            self._fit_inverse(dataset, gen, lambda i, base=done: self.report(base + i, total))
        self.inverse.to(self.device).eval()
        self.data = dataset
        self._fit_state = {"tdr": state["tdr"], "dynamics": state["dynamics"], "checker": state["checker"],
                           "planner": state["planner"],
                           "inverse": {k: v.detach().cpu() for k, v in self.inverse.state_dict().items()}}

    def _fit_checker(self, dataset: Dataset, gen, progress) -> None:
        """The one-step model for rewards and the dynamics check: the dynamics model's own ensemble when it is
        one, else DiffStitch's ensemble fitted here; and its own error on real transitions (for delta)."""
        import torch

        from blocks.dynamics import EnsembleConfig, GaussianEnsemble

        c = self.config
        obs, act = np.asarray(dataset.observations), np.asarray(dataset.actions)
        if c.dynamics == "ensemble":
            self.checker = self.dynamics.ensemble
        else:
            cfg = EnsembleConfig(members=c.members, elites=c.elites, hidden=(c.ensemble_width,) * c.ensemble_layers,
                                 max_epochs=c.ensemble_epochs)
            self.checker = GaussianEnsemble(obs.shape[1], act.shape[1], cfg)
            self.checker.fit(obs, act, dataset.next_observations, dataset.rewards, generator=gen, device=self.device,
                             log=lambda row: progress(row["epoch"]))
        rows = np.sort(np.random.default_rng(self.seed).permutation(len(obs))[:100_000])
        pred, _ = self.checker.sample(obs[rows], act[rows], gen, deterministic=True)
        scale = torch.as_tensor(self._step_scale(dataset), device=pred.device)
        truth = torch.as_tensor(np.asarray(dataset.next_observations)[rows], device=pred.device)
        self.model_error = ((pred - truth).abs() / scale).amax(1).cpu().numpy()

    def _checker_state(self) -> dict:
        return {"ensemble": None if self.config.dynamics == "ensemble" else self.checker.to_state(),
                "model_error": self.model_error}

    def _set_checker(self, st: dict) -> None:
        from blocks.dynamics import GaussianEnsemble

        self.checker = (self.dynamics.ensemble if st["ensemble"] is None
                        else GaussianEnsemble.from_state(st["ensemble"], device=self.device))
        self.model_error = st["model_error"]

    @staticmethod
    def _step_scale(dataset: Dataset) -> np.ndarray:
        change = np.asarray(dataset.next_observations, np.float64) - np.asarray(dataset.observations, np.float64)
        return np.maximum(change.std(0), 1e-6).astype(np.float32)

    def _inverse_net(self, d: int, a: int, dataset: Dataset | None = None):
        import torch

        from blocks.nn import InverseDynamics

        c = self.config
        return InverseDynamics(d, a, c.inv_width, torch.Generator().manual_seed(self.seed), c.inverse_input,
                               *((dataset.observations, dataset.next_observations) if dataset else ()))

    def _inverse_in(self, s):
        """The inverse model's state input: the planner's z-score ("pair") or raw ("delta")."""
        return self.planner.s_norm.transform(s) if self.config.inverse_input == "pair" else s

    def _fit_inverse(self, dataset: Dataset, gen, progress) -> None:
        """The ablation's inverse dynamics (DiffStitch's MLP) -> scaled a, Adam 1e-3, batch 256."""
        import torch

        p = self.planner
        d, a = dataset.observations.shape[1], dataset.actions.shape[1]
        self.inverse = self._inverse_net(d, a, dataset).to(self.device)
        opt = torch.optim.Adam(self.inverse.parameters(), lr=1e-3)
        obs = self._inverse_in(torch.tensor(np.asarray(dataset.observations, np.float32), device=self.device))
        nxt = self._inverse_in(torch.tensor(np.asarray(dataset.next_observations, np.float32), device=self.device))
        act = p.a_norm.transform(torch.tensor(np.asarray(dataset.actions, np.float32), device=self.device))
        for i in range(self.config.inv_steps):
            rows = torch.randint(len(obs), (256,), generator=gen, device=self.device)
            loss = torch.nn.functional.mse_loss(self.inverse(obs[rows], nxt[rows]), act[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (i + 1) % 500 == 0:
                progress(i + 1)

    def fitted_state(self) -> dict:
        return self._fit_state

    def load_fitted(self, dataset: Dataset, state: dict) -> None:
        from methods.astro.dynamics import DynamicsModel
        from methods.astro.planner import ActionPlanner
        from methods.astro.tdr import TDR

        d, a = dataset.observations.shape[1], dataset.actions.shape[1]
        self.tdr = TDR.from_state(state["tdr"], device=self.device)
        self.dynamics = DynamicsModel.from_state(state["dynamics"], device=self.device)
        self._set_checker(state["checker"])
        self.planner = ActionPlanner.from_state(state["planner"], device=self.device)
        self.inverse = self._inverse_net(d, a)
        self.inverse.load_state_dict(state["inverse"])
        self.inverse.to(self.device).eval()
        self.data = dataset
        self._fit_state = state

    # -- generate ---------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Per-row tensors for stitching: states, TDR embeddings, returns-to-go, episodes and steps."""
        import torch

        from methods.astro.targets import TargetConfig
        from methods.diffstitch import exact_reward_fn

        c, ds, dev = self.config, self.data, self.device
        self.tcfg = TargetConfig(metric=c.target_metric, d_min=c.d_min, d_max=c.d_max, candidates=c.candidates,
                                 prefer=c.prefer, temperature=c.temperature, consistency=c.consistency,
                                 consistency_scale=c.consistency_scale,
                                 tdr_discount=c.discount if c.window_units == "steps" else None).validate()
        off = np.asarray(ds.episode_offsets, np.int64)
        lengths = np.diff(off)
        self.row_ep = np.repeat(np.arange(len(lengths)), lengths)
        self.row_t = np.arange(len(ds)) - off[self.row_ep]
        self.rtg = discounted_rtg(np.asarray(ds.rewards, np.float64), off, c.discount)
        order = np.argsort(self.rtg, kind="stable")
        n_src = max(1, round(c.source_fraction * len(ds)))
        self.src_rows = torch.as_tensor(order[-n_src:], device=dev)
        self.obs = torch.tensor(np.asarray(ds.observations, np.float32), device=dev)
        self.emb = self.tdr.embed(self.obs)
        self.rtg_t = torch.as_tensor(self.rtg, device=dev)
        self.ep_t = torch.as_tensor(self.row_ep, device=dev)
        self.step_scale = torch.as_tensor(self._step_scale(ds), device=dev)
        self.planner.cfg.feedback_every = c.feedback_every
        self.planner.cfg.guidance_scale = c.guidance_scale
        self.planner.cfg.noise_scale = c.noise_scale
        self._exact_fn = exact_reward_fn(self.data) if c.rewards in ("auto", "exact") else None
        if c.rewards == "exact" and self._exact_fn is None:
            raise BenchError(f"astro: rewards 'exact' needs an OGBench maze dataset; '{self.data.meta.name}' "
                             f"has no state-based reward rule (use 'model')")

    @property
    def delta(self) -> float:
        c = self.config
        return float(np.quantile(self.model_error, c.delta_quantile)) if c.delta_quantile > 0 else c.delta

    def _best_plan(self, s0, goal, k):
        """`plans` action plans per pair in one batch; each pair keeps the one with the smallest reach error."""
        import torch

        from methods.astro.planner import Plan

        c, n = self.config, len(s0)
        if c.plans == 1:
            return self.planner.plan(s0, goal, k, self.dynamics, self.torch_generator, feedback=c.feedback)
        rep = lambda x: x.repeat_interleave(c.plans, 0)  # noqa: E731
        p = self.planner.plan(rep(s0), rep(goal), rep(k), self.dynamics, self.torch_generator, feedback=c.feedback)
        best = p.reach.view(n, c.plans).argmin(1) + torch.arange(n, device=p.reach.device) * c.plans
        return Plan(actions=p.actions[best], states=p.states[best], reach=p.reach[best], history=p.history)

    def stitch_batch(self) -> dict:
        """One iteration: `sources_per_iteration` sources, each stitched or rejected (the reason: -1 accepted,
        else an index of REASONS).  Batched on the device."""
        import torch

        from methods.astro.targets import draw_candidates, select_targets
        from methods.tatu import termination_rule

        c, g, dev = self.config, self.torch_generator, self.device
        S, H = c.sources_per_iteration, c.horizon
        src = self.src_rows[torch.randint(len(self.src_rows), (S,), generator=g, device=dev)]
        N = len(self.obs)
        if N <= 65_536:
            cand = draw_candidates(N, S, self.tcfg, g)  # without replacement, as DiffStitch
        else:  # a large pool: with replacement (an S x N draw would not fit; repeats are rare)
            cand = torch.randint(N, (S, min(c.candidates, N)), generator=g, device=dev)
        sel = select_targets(self.emb[src], self.emb[cand], self.rtg_t[cand], self.ep_t[cand], self.ep_t[src],
                             self.tcfg, g, source_xy=self.obs[src], cand_xy=self.obs[cand])
        has = sel["has"]
        out = {"sources": S, "no_target": int((~has).sum()), "inconsistent": int(sel["inconsistent"].sum())}
        idx = has.nonzero()[:, 0]
        if len(idx) == 0:
            return {**out, "n": 0}
        n = len(idx)
        s_row, t_row = src[idx], cand[idx, sel["chosen"][idx]]
        dist, steps = sel["distance"][idx], sel["steps"][idx]
        if c.window_units == "steps":  # the TDR distance in its discounted units, (1 - g^d) / (1 - g), back to d
            x = (1.0 - c.discount) * steps
            steps = torch.where(x < 1, torch.log1p(-x.clamp(max=1 - 1e-7)) / math.log(c.discount), float(H))
        if c.fixed_length:
            k = torch.full((n,), c.fixed_length, device=dev, dtype=torch.long)
        else:
            k = torch.ceil(c.length_scale * steps.nan_to_num(float(H))).long().clamp(c.min_length, H)
        s0, goal = self.obs[s_row], self.obs[t_row]
        plan = self._best_plan(s0, goal, k)
        pos = torch.arange(H, device=dev)
        rows = torch.arange(n, device=dev)
        reached = plan.states  # (n, H, d): s^_1 .. s^_H
        reach = plan.reach
        actions = plan.actions
        nxt = reached.clone()
        if c.actions == "inverse":  # the ablation: a state path forced onto the target, inverse-model actions
            gap = goal - reached[rows, k - 1]
            frac = ((pos + 1).float()[None] / k[:, None].float()).clamp(max=1.0)
            nxt = reached + frac[..., None] * gap[:, None]
            prev = torch.cat([s0[:, None], nxt[:, :-1]], 1)
            p = self.planner
            with torch.no_grad():
                a_norm = self.inverse(self._inverse_in(prev), self._inverse_in(nxt))
            actions = p.a_norm.inverse(a_norm)
        if c.join == "target":
            nxt[rows, k - 1] = goal
        states = torch.cat([s0[:, None], nxt], 1)  # (n, H + 1, d): positions 0..k valid
        valid = pos < k[:, None]  # (n, H)
        flat_s, flat_a = states[:, :-1].reshape(-1, states.shape[-1]), actions.reshape(-1, actions.shape[-1])
        with torch.no_grad():
            ens_next, ens_rew = self.checker.sample(flat_s, flat_a, g, deterministic=True)
        ens_next, ens_rew = ens_next.reshape(n, H, -1), ens_rew.reshape(n, H)
        err = ((ens_next - states[:, 1:]).abs() / self.step_scale).amax(-1)
        err = torch.where(valid, err, torch.zeros_like(err))
        rule = termination_rule(self.data.meta.simulator.env_id)
        failed = (rule(states[:, 1:].reshape(-1, states.shape[-1])).reshape(n, H) & valid).any(1) if rule \
            else torch.zeros(n, dtype=torch.bool, device=dev)
        if self._exact_fn is not None:
            r, term = self._exact_fn(flat_s)
            rewards, terminals = r.reshape(n, H), term.reshape(n, H) & valid
        else:
            rewards, terminals = ens_rew, torch.zeros((n, H), dtype=torch.bool, device=dev)
        rewards = torch.where(valid, rewards, torch.zeros_like(rewards))
        disc = c.discount ** pos.double()
        new_rtg = (rewards.double() * disc).sum(1) + c.discount ** k.double() * self.rtg_t[t_row]
        checks = [reach > c.reach_tol, failed, (err > self.delta).any(1),
                  (self.rtg_t[s_row] > new_rtg) & c.check_return]  # REASONS[1:]
        reason = torch.full((n,), -1, dtype=torch.long, device=dev)
        for code, bad in reversed(list(enumerate(checks, start=1))):
            reason = torch.where(bad, torch.full_like(reason, code), reason)
        if not c.qualify:
            reason = torch.full_like(reason, -1)
        s_np, t_np = s_row.cpu().numpy(), t_row.cpu().numpy()
        return {**out, "n": n, "states": states, "actions": actions, "rewards": rewards, "terminals": terminals,
                "k": k, "reach": reach, "error": err, "reason": reason, "distance": dist,
                "history": plan.history, "source_episode": self.row_ep[s_np], "source_step": self.row_t[s_np],
                "target_episode": self.row_ep[t_np], "target_step": self.row_t[t_np]}

    def generate(self) -> Dataset | None:
        from methods.diffstitch import assemble_stitches

        c = self.config
        self._prepare()
        counts = dict.fromkeys(("attempts", "accepted", *REASONS), 0)
        parts, transitions, it, t0 = [], 0, 0, time.time()
        reach_all, reach_ok, history, inconsistent = [], [], [], 0
        steps_hist = np.zeros(c.horizon + 1, np.int64)
        keys = ("states", "actions", "rewards", "terminals", "k", "source_episode", "source_step", "target_episode",
                "target_step")
        while transitions < c.budget and it < c.max_iterations:
            b = self.stitch_batch()
            it += 1
            counts["attempts"] += b["sources"]
            counts["no_target"] += b["no_target"]
            inconsistent += b["inconsistent"]
            if not b["n"]:
                self.report(min(transitions, c.budget), c.budget)
                continue
            reason = b["reason"].cpu().numpy()
            for code in range(1, len(REASONS)):
                counts[REASONS[code]] += int((reason == code).sum())
            reach = b["reach"].cpu().numpy()
            reach_all.append(reach)
            if b["history"]:
                history.append(b["history"])
            keep = np.flatnonzero(reason == -1)
            if len(keep):
                parts.append({key: (b[key][keep] if isinstance(b[key], np.ndarray) else b[key][keep].cpu().numpy())
                              for key in keys})
                reach_ok.append(reach[keep])
                counts["accepted"] += len(keep)
                transitions += int(parts[-1]["k"].sum())
                np.add.at(steps_hist, parts[-1]["k"], 1)
            self.report(min(transitions, c.budget), c.budget)
        seconds = time.time() - t0

        def mean(chunks):
            return float(np.concatenate(chunks).mean()) if chunks else None

        self.stats = {**counts, "no_target_inconsistent": inconsistent, "transitions": transitions, "iterations": it,
                      "seconds": round(seconds, 3),
                      "stitches_per_second": counts["accepted"] / seconds if seconds > 0 else None,
                      "attempts_per_second": counts["attempts"] / seconds if seconds > 0 else None,
                      "acceptance": counts["accepted"] / counts["attempts"] if counts["attempts"] else 0.0,
                      "delta": self.delta, "reach_mean": mean(reach_all), "reach_mean_accepted": mean(reach_ok),
                      "reach_by_denoising_step": (np.mean(np.asarray(history), 0).round(4).tolist()
                                                  if history else []),
                      "rewards": "exact" if self._exact_fn is not None else "model",
                      "step_counts": {int(k): int(v) for k, v in enumerate(steps_hist) if v}}
        if not parts:
            return None
        return assemble_stitches(self, self.data, {key: np.concatenate([p[key] for p in parts]) for key in keys},
                                 c.emit)

    def provenance(self) -> dict:
        return {**super().provenance(), "astro": getattr(self, "stats", {})}
