"""`diffstitch`: DiffStitch (Li et al., ICML 2024) -- diffusion inpainting of the states between two trajectories,
inverse dynamics for the actions, a dynamics ensemble for rewards and to qualify each stitch.

Follows the authors' code (guangheli12/DiffStitch: `scripts/batch_stitch.py`, `scripts/buffer_utils.py`,
`diffuser/`; claims D1-D14 of ../shared/reference/method-facts.md):
1. State diffusion (D1-D6; `blocks.diffusion` DDPM + `blocks.backbones.TemporalUnet`): a Decision-Diffuser model
   over windows of H = 100 states in per-dimension empirical-CDF space mapped to [-1, 1] (`blocks.normalize.
   EmpiricalCDF`, D7); temporal U-Net base 128, multipliers (1, 4, 8), kernel 5, Mish; 100 steps, cosine
   schedule, epsilon prediction, x0 clamped to [-1, 1]; training masks: the first state plus one random block
   [i, j], 1 <= i <= j <= H - 2, known (inpainted), the loss on the other positions only; return conditioning
   (discounted return-to-go from the window start, gamma 0.99, -100 on the last reward of an episode that ends in
   a termination, / returns_scale 400) with classifier-free guidance (dropout 0.25, weight 1.2, `test_ret` at
   stitch time); sampling noise x 0.5; Adam 2e-4, batch 32 x 2 accumulated, 1M steps, EMA 0.995 every 10 steps
   from step 2000 (`ema-pytorch`, decay held at 0.995: no warm-up, as the authors), sampling from the EMA model.
   An inverse-dynamics MLP [s_t, s_t+1] -> 256 -> 256 -> a (ReLU, D10) is trained jointly (loss = (diffusion +
   inverse MSE) / 2); its EMA copy gives the actions.
2. Pairs (D9): windows with at least H + 1 steps left, scored by the discounted return-to-go from their start;
   sources = the `sources` best (only their first state used), drawn uniformly, 64 per iteration; targets = the
   `targets` best, each with its next H states.
3. Step estimation (D8): imagine H states from the source state (inpainting position 0, return `test_ret`);
   draw 512 targets without replacement; keep those whose first state has cosine similarity >= 0.9 with an
   imagined state at a position in [10, 40); pick one uniformly; the step count k = the window position most
   similar to its first state.  Stitching: inpaint again with the source state at 0 and the target's first
   H - k states from k on; positions 1..k-1 are the stitch: k transitions from the source state to the target's.
4. Wrap-up (D10-D12): actions from the EMA inverse model (CDF space, un-normalised by the action CDF); rewards
   from the shared 7 / 5 Gaussian ensemble (`blocks.dynamics`, raw inputs as the authors) as the mean of one
   random elite per step; stored done = False.
5. Qualification (D13), in the authors' order: termination (the environment's rule on the ensemble's next
   states: Hopper, Walker2d; none for HalfCheetah and mazes), dynamics (any step whose summed squared CDF-space
   error between the diffusion's next state and the ensemble's exceeds `delta`), return (the source window's
   return-to-go above the stitch's, sum_i gamma^i r_i + gamma^k x target return-to-go).  Every reason counted.
6. Generation stops at `budget` transitions (the authors' 2M) or `max_iterations`.

Where the code and the paper (or the intent) differ, named options (defaults: the code, unless said):
- `rtg_lookup` = "chosen" (DEFAULT, NOT the code): the return check uses the chosen target's return-to-go.  The
  authors' code looks it up at position r of the ascending top-`targets` list, r = the chosen candidate's rank
  among the qualifying ones (D13, top-3 #2), i.e. one of the pool's lowest returns; "code" reproduces that.
- `loss_reduction` = "all" (the code): the epsilon error summed over the unknown positions is divided by
  all B x H x d elements (the authors' weighted mean); "unknown" divides by the unknown elements only.
- `normalizer` = "cdf" (the code: the published thresholds assume it); "limits" is Decision Diffuser's min-max
  map to [-1, 1].  In a maze the CDF gives the walls (where no data lie) zero width, so a small error in CDF
  space can carry a state through a wall: reports/diffstitch.md measures both.
- `padding` = "zeros" (the code): training windows run up to one step before an episode's end, padded with
  raw-zero states and actions as Decision Diffuser's buffer (the episode limit is the data's longest episode);
  "none" keeps windows inside episodes.
- `rewards` = "auto": where the dataset is an OGBench maze singletask (reward = 1[||xy(s) - goal|| <= tol] - 1,
  terminal at the goal, a function of the state), rewards and terminals are computed exactly from the task's
  goal; elsewhere the ensemble's ("model", the authors' everywhere).  A goal reached inside a stitch is a
  terminal step, not a rejection (the termination check is for failure terminations).  Recorded in the result.
- `delta_quantile` > 0 sets delta to that quantile of the ensemble's own squared CDF-space error on real
  transitions (the authors' fixed values are tuned for 11-17-dimensional locomotion states; see `pointmaze`).
- `inverse_input` = "pair" (the code): the inverse model reads [x_t, x_t+1] in the diffusion's normalised
  space; "delta" reads raw units, [z(s_t), (s_t+1 - s_t) / std(s' - s)] (the states un-normalised first, as
  the wrap-up already does for the ensemble).  Where s' - s is a near-linear function of a (a point mass), the
  pair input makes the MLP recover a from a difference of two nearby inputs after a non-linear CDF map: on
  pointmaze-medium-stitch's REAL state pairs the pair model's actions violate the true dynamics at 77 % of
  steps after 6,000 steps of 3,168 pairs, the delta model's at 0.1 % after 3,000 (reports/diffstitch-inverse.md).
  The `cpu-small` preset uses "delta"; every other preset the code's "pair".
- `emit` = "full" also writes source prefix + stitch + target suffix as one trajectory ("bridge": the authors,
  only the stitch).
- `test_ret` None: the largest return label of the training windows (no published value exists outside D4RL).
- A stitch's two known ends (the source state, the target's first state) are stored as the data's own values;
  the authors store their CDF round trip (equal up to float32 interpolation error).
Ablations (the paper's): `fixed_step` k > 0 (no step estimation: the stitch always has k steps; the target is
still chosen by similarity), `qualify = False` (no qualification), `rtg_guidance = False` (unconditional
sampling: no return guidance).

Presets: `paper` (the defaults; the D4RL per-dataset values of `detail_configs/` as `hopper-medium-replay`,
`hopper-medium`, `hopper-medium-expert`, `halfcheetah-medium(-replay, -expert)`, `walker2d-medium(-expert)`;
walker2d-medium-replay has no published config), `pointmaze` (OGBench point mazes, chosen here: see PRESETS),
`cpu-smoke` and `cpu-small` (tiny sizes for tests and CPU tables, named in every table that uses them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bench.dataset import Dataset
from bench.errors import BenchError
from methods import AUGMENTERS
from methods.base import Augmenter, AugmenterConfig

REASONS = ("no_target", "termination", "dynamics", "return")  # rejection reasons, in the order they are checked


@dataclass
class DiffStitchConfig(AugmenterConfig):
    ranges = {
        "horizon": "[4, 10000]", "unet_dim": "[8, 4096]", "dim_mults": "[1, 64]", "kernel_size": "[1, 31]",
        "diffusion_steps": "[1, 10000]", "train_steps": "[1, 100000000]", "batch_size": "[1, 1048576]",
        "grad_accumulate": "[1, 1024]", "lr": "(0, 1]", "ema_decay": "[0, 1)", "ema_every": "[1, 100000]",
        "ema_start": "[0, 100000000]", "cond_dropout": "[0, 1)", "returns_scale": "(0, inf)",
        "termination_penalty": "(-inf, inf)", "discount": "(0, 1]", "inv_width": "[1, 65536]",
        "members": "[1, 100]", "elites": "[1, 100]", "ensemble_width": "[1, 65536]", "ensemble_layers": "[1, 32]",
        "ensemble_epochs": "[1, 100000]", "checkpoint_every": "[1, 100000000]", "delta_quantile": "[0, 1)",
        "guidance": "[0, inf)", "noise_scale": "[0, inf)", "similarity": "[-1, 1]", "window_lo": "[1, 10000]",
        "window_hi": "[2, 10000]", "candidates": "[1, 1000000]", "sources_per_iteration": "[1, 1000000]",
        "sources": "[0, 1000000000]", "targets": "[0, 1000000000]", "source_fraction": "(0, 1]",
        "target_fraction": "(0, 1]", "delta": "(0, inf)", "budget": "[1, 1000000000]",
        "max_iterations": "[1, 100000000]", "fixed_step": "[0, 10000]", "test_ret": "(-inf, inf)",
    }
    # -- the state diffusion model and the inverse dynamics (fit) --
    horizon: int = 100
    unet_dim: int = 128
    dim_mults: tuple[int, ...] = (1, 4, 8)
    kernel_size: int = 5
    diffusion_steps: int = 100
    train_steps: int = 1_000_000
    batch_size: int = 32
    grad_accumulate: int = 2
    lr: float = 2e-4
    ema_decay: float = 0.995
    ema_every: int = 10
    ema_start: int = 2000
    cond_dropout: float = 0.25
    returns_scale: float = 400.0
    termination_penalty: float = -100.0
    discount: float = 0.99
    padding: str = "zeros"  # "zeros" (the code) or "none"
    normalizer: str = "cdf"  # "cdf" (the code) or "limits" (min-max, Decision Diffuser's default)
    loss_reduction: str = "all"  # "all" (the code: masked sum / all B H d elements) or "unknown"
    inv_width: int = 256
    inverse_input: str = "pair"  # "pair" (the code: [x_t, x_t+1] normalised) or "delta" (raw [z(s), ds / std])
    # -- the dynamics / reward ensemble (fit) --
    members: int = 7
    elites: int = 5
    ensemble_width: int = 200
    ensemble_layers: int = 4
    ensemble_epochs: int = 200
    checkpoint_every: int = 5000
    # -- stitching (sampling only: changing these reuses the fit) --
    test_ret: float | None = 0.9
    guidance: float = 1.2
    noise_scale: float = 0.5
    clip_denoised: bool = True
    similarity: float = 0.9
    window_lo: int = 10
    window_hi: int = 40  # exclusive
    candidates: int = 512
    sources_per_iteration: int = 64
    sources: int = 0  # 0: source_fraction x transitions
    targets: int = 0  # 0: target_fraction x transitions
    source_fraction: float = 0.3
    target_fraction: float = 0.02
    delta: float = 1.5
    delta_quantile: float = 0.0  # > 0: delta from the ensemble's error on real data (not the authors)
    budget: int = 2_000_000
    max_iterations: int = 300_000
    rtg_lookup: str = "chosen"  # "chosen" (intended) or "code" (the authors' indexing)
    rewards: str = "auto"  # "auto", "model" or "exact"
    emit: str = "bridge"  # "bridge" (the authors) or "full"
    fixed_step: int = 0  # ablation: > 0 skips step estimation
    qualify: bool = True  # ablation: False accepts every stitch that found a target
    rtg_guidance: bool = True  # ablation: False samples without the return condition

    def check(self, where: str) -> None:
        choices = {"padding": ("zeros", "none"), "normalizer": ("cdf", "limits"), "loss_reduction": ("all", "unknown"), "rtg_lookup": ("chosen", "code"),
                   "rewards": ("auto", "model", "exact"), "emit": ("bridge", "full"),
                   "inverse_input": ("pair", "delta")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise BenchError(f"{where}: '{key}' must be one of {', '.join(allowed)}, got '{getattr(self, key)}'")
        levels = 2 ** (len(self.dim_mults) - 1)
        if self.horizon % levels:
            raise BenchError(f"{where}: 'horizon' ({self.horizon}) must be divisible by {levels} for a U-Net with "
                             f"{len(self.dim_mults)} levels")
        if not 1 <= self.window_lo < self.window_hi <= self.horizon - 1:
            raise BenchError(f"{where}: the step window [{self.window_lo}, {self.window_hi}) must lie in "
                             f"[1, horizon - 1 = {self.horizon - 1}]")
        if self.fixed_step and not 1 <= self.fixed_step <= self.horizon - 1:
            raise BenchError(f"{where}: 'fixed_step' must lie in [1, horizon - 1 = {self.horizon - 1}]")
        if self.elites > self.members:
            raise BenchError(f"{where}: 'elites' ({self.elites}) cannot exceed 'members' ({self.members})")


def _d4rl(test_ret: float, delta: float, targets: int, sources: int, similarity: float = 0.9, **extra) -> dict:
    return {"test_ret": test_ret, "delta": delta, "targets": targets, "sources": sources, "similarity": similarity,
            **extra}


PRESETS = {
    "paper": {},
    # The authors' detail_configs/*.py (test_ret, dynamics_deviate, number_optimum, top_k, dreamer_similarity,
    # returns_scale); everything else is the same in every config and is the default here.
    "hopper-medium-replay": _d4rl(0.85, 0.8, 8_000, 120_000),
    "hopper-medium": _d4rl(0.90, 1.5, 20_000, 300_000, similarity=0.8),
    "hopper-medium-expert": _d4rl(0.90, 1.0, 40_000, 600_000, similarity=0.8),
    "halfcheetah-medium-replay": _d4rl(0.35, 1.0, 4_000, 60_000),
    "halfcheetah-medium": _d4rl(0.50, 1.5, 20_000, 300_000, returns_scale=1200.0),
    "halfcheetah-medium-expert": _d4rl(0.92, 1.5, 40_000, 600_000),
    "walker2d-medium": _d4rl(0.92, 1.2, 20_000, 300_000),
    "walker2d-medium-expert": _d4rl(0.80, 1.2, 40_000, 600_000),
    # OGBench point mazes (chosen here; the state is the 2-D position, a step moves at most ~0.28 of a 4-unit
    # cell, stitch episodes have 200 steps):
    # - H = 100 and the window [10, 40) are kept: a stitch of 10-39 steps spans 0.5-2 cells, the distance
    #   between neighbouring trajectories, and 200-step episodes leave 100 windows each with H + 1 steps left;
    # - padding "none": a raw-zero pad state is a real maze position (0, 0), so padded windows would teach
    #   the model jumps to it;
    # - similarity 0.99: in 2-D the cosine only measures the direction from the CDF median, and 0.9 admits a
    #   26-degree cone spanning several cells (0.99: 8 degrees);
    # - delta from the data (its 0.99 quantile of the ensemble's one-step error on real transitions): the
    #   authors' 0.8-1.5 are summed squared errors over 11-17 locomotion dimensions; a maze step moves ~0.02
    #   in CDF units, so those values would never reject anything;
    # - test_ret None: the best return label of the data (the task's rewards are -1 per step, 0 at the goal).
    "pointmaze": {"padding": "none", "similarity": 0.99, "delta_quantile": 0.99, "test_ret": None},
    # `pointmaze` at a size a 2-core CPU fits in minutes (U-Net base 16, 20 denoising steps, 6,000 steps without
    # accumulation, a 5 / 3 ensemble of 3 epochs): for CPU tables, which name it.  The inverse model reads
    # raw state deltas: at this budget the code's pair input leaves 77 % of real point-maze pairs violating the
    # dynamics (module doc, `inverse_input`).
    "cpu-small": {"padding": "none", "similarity": 0.99, "delta_quantile": 0.99, "test_ret": None,
                  "inverse_input": "delta",
                  "unet_dim": 16, "train_steps": 6000, "grad_accumulate": 1, "diffusion_steps": 20,
                  "members": 5, "elites": 3, "ensemble_epochs": 3, "ema_start": 200, "checkpoint_every": 500,
                  "budget": 20_000, "max_iterations": 200},
    "cpu-smoke": {"horizon": 16, "unet_dim": 16, "dim_mults": (1, 2, 4), "diffusion_steps": 8,
                  "train_steps": 60, "batch_size": 16, "grad_accumulate": 1, "ema_start": 10, "ema_every": 2,
                  "members": 3, "elites": 2, "ensemble_width": 32, "ensemble_layers": 2, "ensemble_epochs": 2,
                  "checkpoint_every": 20, "window_lo": 3, "window_hi": 12, "candidates": 64,
                  "sources_per_iteration": 16, "budget": 150, "max_iterations": 6, "similarity": 0.9,
                  "padding": "none", "test_ret": None, "delta": 3.0},  # loose: a 60-step model's stitches
}


def exact_reward_fn(dataset: Dataset):
    """For an OGBench maze singletask dataset, its labels as a function of the state (torch, (B, d) -> rewards
    (B,), terminals (B,)): success = ||xy(s) - goal|| <= tol, reward = success - 1, terminal = success (OGBench's
    relabelling, from the row's own state).  For goal-conditioned maze data: rewards 0, no terminal.  None where
    the labels are not such a function (locomotion)."""
    import torch

    meta = dataset.meta
    if meta.source != "ogbench" or not (meta.simulator.obs_to_state or "").startswith("qpos"):
        return None
    if meta.task is None:
        return lambda s: (torch.zeros(len(s), device=s.device), torch.zeros(len(s), dtype=torch.bool, device=s.device))
    from bench.data.ogbench_data import task_goal

    goal, tol = task_goal(meta)
    goal = goal.astype(np.float32)

    def labels(s):
        success = (s[:, :2] - torch.as_tensor(goal, device=s.device)).norm(dim=1) <= tol
        return success.float() - 1.0, success

    return labels


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges [starts[k], starts[k] + lengths[k]) in order, without a Python loop."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.asarray(starts, np.int64), lengths) + np.arange(total) - offsets


def assemble_stitches(aug: Augmenter, ds: Dataset, b: dict, emit: str) -> Dataset:
    """Accepted stitches as `trajectories` (shared by DiffStitch and ASTRO).  `b` holds, per stitch, states
    (n, P, d) with positions 0..k valid, actions / rewards / terminals (n, P - 1, ...) valid for steps < k, k, and
    the source and target episode and step.  Each bridge of k steps is one segment; with `emit = "full"` the
    source episode's steps before it and the target episode's steps from its target state on go around it."""
    k = b["k"].astype(np.int64)
    n, P = len(k), b["states"].shape[1]
    d, a = b["states"].shape[2], b["actions"].shape[2]
    steps = _ragged(np.arange(n) * (P - 1), k)  # rows of the flattened (n, P - 1) arrays
    obs = b["states"][:, :-1].reshape(-1, d)[steps]
    nxt = b["states"][:, 1:].reshape(-1, d)[steps]
    act, rew = b["actions"].reshape(-1, a)[steps], b["rewards"].reshape(-1)[steps]
    term = b["terminals"].reshape(-1)[steps]
    lengths = k
    if emit == "full":
        off, N = ds.episode_offsets, len(ds)
        pre = (off[b["source_episode"]], b["source_step"])
        suf = (off[b["target_episode"]] + b["target_step"],
               off[b["target_episode"] + 1] - off[b["target_episode"]] - b["target_step"])
        bridge_start = N + np.concatenate([[0], np.cumsum(k)[:-1]])
        starts = np.stack([pre[0], bridge_start, suf[0]], 1).reshape(-1)
        lens = np.stack([pre[1], k, suf[1]], 1).reshape(-1)
        rows = _ragged(starts, lens)

        def full(original, generated):
            return np.concatenate([np.asarray(original), generated])[rows]

        obs, nxt = full(ds.observations, obs), full(ds.next_observations, nxt)
        act, rew, term = full(ds.actions, act), full(ds.rewards, rew), full(ds.terminals, term)
        lengths = pre[1] + k + suf[1]
    return aug.trajectories(ds, observations=obs, actions=act, rewards=rew, next_observations=nxt,
                            lengths=lengths, source_episode=b["source_episode"], source_step=b["source_step"],
                            target_episode=b["target_episode"], target_step=b["target_step"], terminals=term)


class _Episodes:
    """The dataset laid out per episode: padded (n_episodes, T + H) arrays of CDF-normalised states and actions,
    raw rewards, and discounted returns-to-go, on the device."""

    def __init__(self, ds: Dataset, obs_cdf, act_cdf, horizon: int, discount: float, penalty: float, device,
                 raw: bool = False):
        import torch

        offsets = np.asarray(ds.episode_offsets, np.int64)
        self.offsets, self.lengths = offsets, np.diff(offsets)
        n, T, H = len(self.lengths), int(self.lengths.max()), horizon
        self.T = T
        ep = np.repeat(np.arange(n), self.lengths)
        t = np.arange(len(ds)) - offsets[ep]
        obs, act = np.asarray(ds.observations, np.float32), np.asarray(ds.actions, np.float32)
        d, a = obs.shape[1], act.shape[1]
        pad_s = obs_cdf.transform(np.zeros((1, d), np.float32))[0]  # a raw-zero state (Decision Diffuser's pad)
        pad_a = act_cdf.transform(np.zeros((1, a), np.float32))[0]
        states = np.broadcast_to(pad_s, (n, T + H, d)).copy()
        actions = np.broadcast_to(pad_a, (n, T + H, a)).copy()
        states[ep, t] = obs_cdf.transform(obs)
        actions[ep, t] = act_cdf.transform(act)
        rewards = np.zeros((n, T + H), np.float64)
        rewards[ep, t] = np.asarray(ds.rewards, np.float64)
        rtg = np.zeros((n, T + H + 1))
        for k in range(T - 1, -1, -1):  # one vector op per time step over all episodes
            rtg[:, k] = rewards[:, k] + discount * rtg[:, k + 1]
        self.rtg = rtg[:, :T + H]  # discounted return-to-go from each step, raw rewards (pair scores, D9)
        label = rewards.copy()  # return labels of the diffusion model: the termination penalty on the last step
        ends_terminal = np.asarray(ds.terminals, bool)[offsets[1:] - 1]
        label[np.arange(n)[ends_terminal], self.lengths[ends_terminal] - 1] += penalty
        lrtg = np.zeros((n, T + H + 1))
        for k in range(T - 1, -1, -1):
            lrtg[:, k] = label[:, k] + discount * lrtg[:, k + 1]
        self.label_rtg = lrtg[:, :T + H]
        self.states = torch.as_tensor(states, device=device)
        self.actions = torch.as_tensor(actions, device=device)
        self.raw = None
        if raw:  # the raw states, same layout (raw-zero pads): the `delta` inverse model's training input
            raw_states = np.zeros((n, T + H, d), np.float32)
            raw_states[ep, t] = obs
            self.raw = torch.as_tensor(raw_states, device=device)

    def windows(self, horizon: int, padding: str) -> tuple[np.ndarray, np.ndarray]:
        """Training windows (episode, start): Decision Diffuser's rule with padding (starts up to
        min(L - 1, T - H) exclusive), or windows inside the episode."""
        if padding == "zeros":
            last = np.minimum(self.lengths - 1, self.T - horizon)  # exclusive
        else:
            last = self.lengths - horizon + 1
        last = np.maximum(last, 0)
        ep = np.repeat(np.arange(len(self.lengths)), last)
        return ep, _ragged(np.zeros(len(last), np.int64), last)

    def pair_windows(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair-selection windows: starts with at least H + 1 steps left (the authors' `horizon - j > H`)."""
        count = np.maximum(self.lengths - horizon, 0)
        ep = np.repeat(np.arange(len(self.lengths)), count)
        return ep, _ragged(np.zeros(len(count), np.int64), count)


class _Model:
    """The temporal U-Net and the inverse-dynamics MLP, trained and EMA-averaged together (as the authors)."""

    @staticmethod
    def build(c: DiffStitchConfig, obs_dim: int, act_dim: int, generator, dataset: Dataset | None = None):
        """`dataset` gives the `delta` input's scales (buffers, saved with the weights); None when loading."""
        from torch import nn

        from blocks.backbones import TemporalUnet
        from blocks.nn import InverseDynamics

        class _Pair(nn.Module):
            def __init__(self):
                super().__init__()
                self.unet = TemporalUnet(c.horizon, obs_dim, dim=c.unet_dim, dim_mults=tuple(c.dim_mults),
                                         kernel_size=c.kernel_size, returns_condition=True, generator=generator)
                self.inv = InverseDynamics(obs_dim, act_dim, c.inv_width, generator, c.inverse_input,
                                           *((dataset.observations, dataset.next_observations) if dataset else ()))

            def inverse(self, s, s_next):
                """Normalised actions from consecutive states: normalised ("pair") or raw ("delta") states."""
                return self.inv(s, s_next)

        return _Pair()


@AUGMENTERS.register
class DiffStitch(Augmenter):
    name = "diffstitch"
    config_class = DiffStitchConfig
    output = "trajectories"
    presets = PRESETS
    sample_fields = ("test_ret", "guidance", "noise_scale", "clip_denoised", "similarity", "window_lo",
                     "window_hi", "candidates", "sources_per_iteration", "sources", "targets", "source_fraction",
                     "target_fraction", "delta", "budget", "max_iterations", "rtg_lookup", "rewards", "emit",
                     "fixed_step", "qualify", "rtg_guidance", "delta_quantile")
    limit_fields = ("budget", "max_iterations")

    # -- fit --------------------------------------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> None:
        import torch
        from ema_pytorch import EMA

        from blocks.diffusion import DDPMConfig, DDPMSchedule, ddpm_loss
        c = self.config
        norm = self._normalizer()
        self._prepare(dataset, norm.fit(dataset.observations), norm.fit(dataset.actions))
        w_ep, w_start = self.episodes.windows(c.horizon, c.padding)
        if len(w_ep) == 0:
            raise BenchError(f"diffstitch: no episode of '{dataset.meta.name}' is long enough for windows of "
                             f"horizon {c.horizon} (the longest has {int(self.episodes.lengths.max())} steps)")
        gen = self.fit_generator(0xD5)
        model = _Model.build(c, self.obs_dim, self.act_dim, gen, dataset).to(self.device)
        ema = EMA(model, beta=c.ema_decay, update_every=c.ema_every, update_after_step=c.ema_start,
                  min_value=c.ema_decay)  # decay fixed at 0.995 after the start (no warm-up), as the authors
        opt = torch.optim.Adam(model.parameters(), lr=c.lr)
        sched = DDPMSchedule(DDPMConfig(steps=c.diffusion_steps)).to(self.device)
        dcfg = DDPMConfig(steps=c.diffusion_steps, cond_dropout=c.cond_dropout)
        total = c.train_steps + c.ensemble_epochs
        state, start = self.fit_checkpoint(), 0
        if state is not None:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            gen.set_state(state["generator"])
            start = state["step"]
        w_ep_t = torch.as_tensor(w_ep, device=self.device)
        w_start_t = torch.as_tensor(w_start, device=self.device)
        labels = torch.as_tensor(self.episodes.label_rtg[w_ep, w_start] / c.returns_scale, dtype=torch.float32,
                                 device=self.device)
        pos = torch.arange(c.horizon, device=self.device)
        H = c.horizon
        model.train()
        for step in range(start, c.train_steps):
            opt.zero_grad(set_to_none=True)
            for _ in range(c.grad_accumulate):
                rows = torch.randint(len(w_ep), (c.batch_size,), generator=gen, device=self.device)
                ep, st = w_ep_t[rows, None], w_start_t[rows, None] + pos
                x, a = self.episodes.states[ep, st], self.episodes.actions[ep, st]
                i = torch.randint(1, H - 1, (c.batch_size, 1), generator=gen, device=self.device)
                span = torch.rand((c.batch_size, 1), generator=gen, device=self.device)
                j = i + (span * (H - 1 - i)).long()  # uniform in [i, H - 2]
                known = ((pos == 0) | ((pos >= i) & (pos <= j)))[..., None]
                diffusion = ddpm_loss(model.unet, x, known, sched, dcfg, gen, cond=labels[rows, None],
                                      reduction=c.loss_reduction)
                s_in = x if self.episodes.raw is None else self.episodes.raw[ep, st]
                inverse = torch.nn.functional.mse_loss(model.inverse(s_in[:, :-1], s_in[:, 1:]), a[:, :-1])
                (0.5 * (diffusion + inverse) / c.grad_accumulate).backward()
            opt.step()
            ema.update()
            done = step + 1
            if done % c.checkpoint_every == 0 or done == c.train_steps:  # the last one: a kill during the
                # ensemble's fit resumes after the diffusion model
                self.save_fit_checkpoint({"model": model.state_dict(), "ema": ema.state_dict(),
                                          "opt": opt.state_dict(), "generator": gen.get_state(), "step": done})
            if done % 100 == 0 or done == c.train_steps:
                self.report(done, total)
        self.model = ema.ema_model.eval()
        self.label_max = float(labels.max())
        self._fit_ensemble(dataset, gen, lambda e: self.report(c.train_steps + e, total))

    def _normalizer(self):
        from blocks.normalize import EmpiricalCDF, MinMax

        return EmpiricalCDF if self.config.normalizer == "cdf" else MinMax

    def _prepare(self, dataset: Dataset, obs_cdf, act_cdf) -> None:
        c = self.config
        self.data, self.obs_cdf, self.act_cdf = dataset, obs_cdf, act_cdf
        self.obs_dim, self.act_dim = dataset.observations.shape[1], dataset.actions.shape[1]
        self.episodes = _Episodes(dataset, obs_cdf, act_cdf, c.horizon, c.discount, c.termination_penalty,
                                  self.device, raw=c.inverse_input == "delta")

    def _fit_ensemble(self, dataset: Dataset, gen, progress) -> None:
        import torch

        from blocks.dynamics import EnsembleConfig, GaussianEnsemble

        c = self.config
        obs, act = np.asarray(dataset.observations), np.asarray(dataset.actions)
        cfg = EnsembleConfig(members=c.members, elites=c.elites, hidden=(c.ensemble_width,) * c.ensemble_layers,
                             max_epochs=c.ensemble_epochs)
        self.ensemble = GaussianEnsemble(self.obs_dim, self.act_dim, cfg)
        self.ensemble.fit(obs, act, dataset.next_observations, dataset.rewards, generator=gen, device=self.device,
                          log=lambda row: progress(row["epoch"]))
        # the ensemble's own one-step error (CDF space) on up to 100k real transitions: `delta_quantile` reads it
        rows = np.sort(np.random.default_rng(self.seed).permutation(len(obs))[:100_000])
        pred, _ = self.ensemble.sample(obs[rows], act[rows], gen, deterministic=True)
        err = ((self.obs_cdf.transform(pred) - torch.as_tensor(self.obs_cdf.transform(
            np.asarray(dataset.next_observations)[rows]), device=pred.device)) ** 2).sum(1)
        self.model_error = err.cpu().numpy()

    def fitted_state(self) -> dict:
        return {"model": self.model.state_dict(), "obs_cdf": self.obs_cdf.to_state(),
                "act_cdf": self.act_cdf.to_state(), "ensemble": self.ensemble.to_state(),
                "label_max": self.label_max, "model_error": self.model_error}

    def load_fitted(self, dataset: Dataset, state: dict) -> None:
        import torch

        from blocks.dynamics import GaussianEnsemble

        norm = self._normalizer()
        self._prepare(dataset, norm.from_state(state["obs_cdf"]), norm.from_state(state["act_cdf"]))
        self.model = _Model.build(self.config, self.obs_dim, self.act_dim, torch.Generator().manual_seed(0))
        self.model.load_state_dict(state["model"])
        self.model = self.model.to(self.device).eval()
        self.ensemble = GaussianEnsemble.from_state(state["ensemble"], device=self.device)
        self.label_max, self.model_error = state["label_max"], state["model_error"]

    # -- pairs ------------------------------------------------------------------------------------------------
    def _pools(self) -> None:
        """Source and target pools (D9): the best windows by discounted return-to-go, ascending."""
        c, e = self.config, self.episodes
        ep, start = e.pair_windows(c.horizon)
        if len(ep) == 0:
            raise BenchError(f"diffstitch: no episode of '{self.data.meta.name}' has {c.horizon + 1} steps left "
                             f"after any start; choose a smaller horizon")
        score = e.rtg[ep, start]
        order = np.argsort(score, kind="stable")
        n = len(self.data)
        n_src = min(len(order), c.sources or max(1, round(c.source_fraction * n)))
        n_tgt = min(len(order), c.targets or max(1, round(c.target_fraction * n)))
        self.pool_sizes = {"windows": int(len(order)), "sources": int(n_src), "targets": int(n_tgt)}
        self.src = (ep[order[-n_src:]], start[order[-n_src:]], score[order[-n_src:]])
        self.tgt = (ep[order[-n_tgt:]], start[order[-n_tgt:]], score[order[-n_tgt:]])

    # -- one batch of stitches --------------------------------------------------------------------------------
    def _sample(self, known, values, cond):
        import torch

        from blocks.diffusion import DDPMConfig, DDPMSchedule, ddpm_sample

        c = self.config
        cfg = DDPMConfig(steps=c.diffusion_steps, noise_scale=c.noise_scale, guidance=c.guidance,
                         clip_denoised=1.0 if c.clip_denoised else None)
        if not hasattr(self, "_schedule"):
            self._schedule = DDPMSchedule(cfg).to(self.device)
        with torch.no_grad():
            return ddpm_sample(self.model.unet, tuple(values.shape), self._schedule, cfg, self.torch_generator,
                               known_mask=known, known_values=values, cond=cond)

    def stitch_batch(self) -> dict:
        """One iteration: `sources_per_iteration` sources, each stitched or rejected.  Returns, per source that
        found a target, the stitch (raw states (S, H, d): positions 0..k; actions, rewards, terminals (S, H - 1)
        valid for steps < k; k), the per-step dynamics error, and the reason (-1 accepted, else an index of
        REASONS); plus the count of sources without a target.  Everything is batched on the device."""
        import torch
        import torch.nn.functional as F

        c, e, g, dev = self.config, self.episodes, self.torch_generator, self.device
        S, H = c.sources_per_iteration, c.horizon
        src_ep, src_start, src_rtg = self.src
        tgt_ep, tgt_start, tgt_rtg = self.tgt
        pick = torch.randint(len(src_ep), (S,), generator=g, device=dev).cpu().numpy()
        s_ep, s_t, s_rtg = src_ep[pick], src_start[pick], src_rtg[pick]
        source = e.states[torch.as_tensor(s_ep, device=dev), torch.as_tensor(s_t, device=dev)]  # (S, d)
        test_ret = self.label_max if c.test_ret is None else c.test_ret
        cond = torch.full((S, 1), float(test_ret), device=dev) if c.rtg_guidance else None
        pos = torch.arange(H, device=dev)
        # step estimation (D8): imagine H states from the source, compare with candidates' first states
        known = (pos == 0).expand(S, H)[..., None]
        values = torch.zeros((S, H, self.obs_dim), device=dev)
        values[:, 0] = source
        imagined = self._sample(known, values, cond)
        n_cand = min(c.candidates, len(tgt_ep))
        cand = torch.multinomial(torch.ones((S, len(tgt_ep)), device=dev), n_cand, replacement=False, generator=g)
        tgt_ep_t, tgt_start_t = torch.as_tensor(tgt_ep, device=dev), torch.as_tensor(tgt_start, device=dev)
        first = e.states[tgt_ep_t[cand], tgt_start_t[cand]]  # (S, C, d)
        cos = F.normalize(first, dim=-1) @ F.normalize(imagined[:, c.window_lo:c.window_hi], dim=-1).transpose(1, 2)
        ok = cos.max(-1).values >= c.similarity  # (S, C)
        draw = torch.rand(ok.shape, generator=g, device=dev).masked_fill(~ok, -1.0)
        chosen = draw.argmax(1)
        rank = (ok.long().cumsum(1) - 1).gather(1, chosen[:, None])[:, 0]  # its index among the qualifying
        rows = torch.arange(S, device=dev)
        if c.fixed_step:
            k = torch.full((S,), c.fixed_step, device=dev)
        else:
            k = c.window_lo + cos[rows, chosen].argmax(1)
        has = ok.any(1)
        out = {"no_target": int((~has).sum()), "sources": S}
        idx = has.nonzero()[:, 0]
        if len(idx) == 0:
            return {**out, "n": 0}
        t_abs = cand[idx, chosen[idx]]  # positions in the target pool
        idx_np, t_np = idx.cpu().numpy(), t_abs.cpu().numpy()
        k, source, n = k[idx], source[idx], len(idx)
        cond = cond[idx] if cond is not None else None
        # stitching: source state at 0, the target's first H - k states from k on
        known = ((pos == 0) | (pos >= k[:, None]))[..., None]
        offset = (pos - k[:, None]).clamp(min=0)
        values = e.states[tgt_ep_t[t_abs][:, None], tgt_start_t[t_abs][:, None] + offset]
        values[:, 0] = source
        x = self._sample(known, values, cond)  # (n, H, d) CDF space
        # wrap-up (D10-D12): inverse-dynamics actions, ensemble rewards and next states
        if c.inverse_input == "pair":  # the code: on the sampled (normalised) states, before the ends are reset
            with torch.no_grad():
                a_norm = self.model.inverse(x[:, :-1], x[:, 1:])
        states = self.obs_cdf.inverse(x)  # raw, clipped to the data's range
        # the known ends keep the data's own values (not their CDF round trip): the source state and the
        # target's first state, where the stitch joins the target
        obs, off = np.asarray(self.data.observations), self.episodes.offsets
        states[:, 0] = torch.as_tensor(obs[off[s_ep[idx_np]] + s_t[idx_np]], device=dev)
        states[torch.arange(n, device=dev), k] = torch.as_tensor(obs[off[tgt_ep[t_np]] + tgt_start[t_np]],
                                                                 device=dev)
        if c.inverse_input == "delta":  # on the stored raw states, the data's own ends included
            with torch.no_grad():
                a_norm = self.model.inverse(states[:, :-1], states[:, 1:])
        actions = self.act_cdf.inverse(a_norm)
        flat_s, flat_a = states[:, :-1].reshape(-1, self.obs_dim), actions.reshape(-1, self.act_dim)
        ens_next, ens_rew = self.ensemble.sample(flat_s, flat_a, g, deterministic=True)
        ens_next, ens_rew = ens_next.reshape(n, H - 1, -1), ens_rew.reshape(n, H - 1)
        valid = pos[:-1] < k[:, None]  # (n, H - 1): the stitch's k steps
        err = ((self.obs_cdf.transform(ens_next) - self.obs_cdf.transform(states[:, 1:])) ** 2).sum(-1)
        err = torch.where(valid, err, torch.zeros_like(err))
        from methods.tatu import termination_rule

        rule = termination_rule(self.data.meta.simulator.env_id)
        failed = (rule(ens_next.reshape(-1, self.obs_dim)).reshape(n, H - 1) & valid).any(1) if rule \
            else torch.zeros(n, dtype=torch.bool, device=dev)
        exact = self._exact()
        if exact is not None:
            r, term = exact(flat_s)
            rewards, terminals = r.reshape(n, H - 1), term.reshape(n, H - 1) & valid
        else:
            rewards, terminals = ens_rew, torch.zeros((n, H - 1), dtype=torch.bool, device=dev)
        rewards = torch.where(valid, rewards, torch.zeros_like(rewards))
        # qualification (D13)
        disc = c.discount ** pos[:-1].double()
        target_rtg = torch.as_tensor(tgt_rtg, device=dev)
        t_rtg = target_rtg[rank[idx]] if c.rtg_lookup == "code" else target_rtg[t_abs]
        new_rtg = (rewards.double() * disc).sum(1) + c.discount ** k.double() * t_rtg
        src_rtg_t = torch.as_tensor(s_rtg[idx_np], device=dev)
        checks = [failed, (err > self.delta).any(1), src_rtg_t > new_rtg]  # REASONS[1:], in the authors' order
        reason = torch.full((n,), -1, dtype=torch.long, device=dev)
        for code, bad in reversed(list(enumerate(checks, start=1))):
            reason = torch.where(bad, torch.full_like(reason, code), reason)
        if not c.qualify:
            reason = torch.full_like(reason, -1)
        return {**out, "n": n, "states": states, "actions": actions, "rewards": rewards, "terminals": terminals,
                "k": k, "error": err, "reason": reason, "new_rtg": new_rtg, "source_rtg": src_rtg_t,
                "source_episode": s_ep[idx_np], "source_step": s_t[idx_np],
                "target_episode": tgt_ep[t_np], "target_step": tgt_start[t_np]}

    def actions_between(self, s, s_next):
        """Raw actions the fitted inverse model gives between raw states (torch, (..., d) each), either input."""
        import torch

        with torch.no_grad():
            if self.config.inverse_input == "delta":
                return self.act_cdf.inverse(self.model.inverse(s, s_next))
            return self.act_cdf.inverse(self.model.inverse(self.obs_cdf.transform(s), self.obs_cdf.transform(s_next)))

    def _exact(self):
        if not hasattr(self, "_exact_fn"):
            mode = self.config.rewards
            fn = exact_reward_fn(self.data) if mode in ("auto", "exact") else None
            if mode == "exact" and fn is None:
                raise BenchError(f"diffstitch: rewards 'exact' needs an OGBench maze dataset; "
                                 f"'{self.data.meta.name}' has no state-based reward rule (use 'model')")
            self._exact_fn = fn
        return self._exact_fn

    @property
    def delta(self) -> float:
        c = self.config
        if c.delta_quantile > 0:
            return float(np.quantile(self.model_error, c.delta_quantile))
        return c.delta

    # -- generate ---------------------------------------------------------------------------------------------
    def generate(self) -> Dataset | None:
        c = self.config
        self._pools()
        counts = dict.fromkeys(("attempts", "accepted", *REASONS), 0)
        parts, transitions, it, t0 = [], 0, 0, time.time()
        steps_hist = np.zeros(c.horizon, np.int64)
        while transitions < c.budget and it < c.max_iterations:
            b = self.stitch_batch()
            it += 1
            counts["attempts"] += b["sources"]
            counts["no_target"] += b["no_target"]
            if b["n"]:
                reason = b["reason"].cpu().numpy()
                for code in range(1, len(REASONS)):
                    counts[REASONS[code]] += int((reason == code).sum())
                keep = np.flatnonzero(reason == -1)
                if len(keep):
                    part = {key: (v[keep] if isinstance(v, np.ndarray) else v[keep].cpu().numpy())
                            for key, v in b.items() if key in ("states", "actions", "rewards", "terminals", "k",
                                                              "source_episode", "source_step", "target_episode",
                                                              "target_step")}
                    parts.append(part)
                    counts["accepted"] += len(keep)
                    transitions += int(part["k"].sum())
                    np.add.at(steps_hist, part["k"], 1)
            self.report(min(transitions, c.budget), c.budget)
        seconds = time.time() - t0
        self.stats = {**counts, "transitions": transitions, "iterations": it, "seconds": round(seconds, 3),
                      "stitches_per_second": counts["accepted"] / seconds if seconds > 0 else None,
                      "attempts_per_second": counts["attempts"] / seconds if seconds > 0 else None,
                      "acceptance": counts["accepted"] / counts["attempts"] if counts["attempts"] else 0.0,
                      "delta": self.delta, "pools": self.pool_sizes,
                      "rewards": "exact" if self._exact() is not None else "model",
                      "step_counts": {int(k): int(v) for k, v in enumerate(steps_hist) if v}}
        if not parts:
            return None
        return assemble_stitches(self, self.data, {key: np.concatenate([p[key] for p in parts]) for key in parts[0]},
                                 self.config.emit)

    def provenance(self) -> dict:
        return {**super().provenance(), "diffstitch": getattr(self, "stats", {})}
