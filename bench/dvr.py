"""Dynamics Violation Rate (DVR): every generated transition checked against the true simulator.

Definition (also in the README and every report that prints a DVR):
- For a generated transition (s, a, r, s'), the simulator is set to the state s encodes and stepped with a; its
  next observation is s'_sim.  The error is the largest, over observation dimensions d, of
  |s'_d - s'_sim,d| / sigma_d, where sigma_d is the standard deviation of the state *change* s'_d - s_d over the
  original dataset (not of the state: a point-maze step moves about 0.2 while positions spread over about 20, so a
  state-scale tolerance would pass a point that did not move at all).
- The transition violates the dynamics when its error exceeds the tolerance (default 0.1: a tenth of a typical
  step).  The original data's error is float rounding (about 1e-5 in the point maze; `reports/dvr.md`), so it
  gives 0, while a transition whose s' is replaced by s is flagged wherever the true dynamics move more than a
  tenth of a typical step.  The rate is also reported as a curve over tolerances 1e-3 .. 10.
- States the simulator cannot hold are violations, counted apart: non-finite values, and (mazes) a state s or a
  generated s' inside a wall or outside the maze.  Rows whose state cannot be rebuilt from the observation
  (Gymnasium Hopper / Walker2d observations clip velocities at +-10) are left out and counted as unrecoverable.
- Also reported: GTA's Dynamic MSE (Lee et al. 2024: the mean over dimensions of the squared difference of the
  next states z-scored with the original data's next-state mean and std), the error quantiles 50/90/99 %, the
  share of actions outside the action space (the simulator is stepped with the action as generated), the reward
  error where the environment's reward is a function of (s, a) (Gymnasium MuJoCo locomotion; the maze rewards
  depend on the task's goal and are not checked), and, for `trajectories` output, the share of segments with at
  least one violating step and the error and rate at each position along the segments.

How a state is rebuilt (`meta.simulator.obs_to_state`):
- `qpos=observations` (OGBench point mazes): the observation is the whole state; the point env adds 0.2 a to
  qpos, zeroes qvel and steps the physics 5 times (ogbench/locomaze/point.py).  Done for all rows at once with
  MuJoCo's batched `mujoco.rollout`, in threads.
- `qpos,qvel=observations` (OGBench ant mazes): qpos and qvel are the observation; the control a is held for
  the env's frame_skip physics steps, also through `mujoco.rollout`.
- `qpos[1:],qvel=observations` (Gymnasium MuJoCo locomotion, Minari D4RL-style data): the x position is not
  observed and the dynamics do not depend on it, so it is set to 0 (as GTA did); the env's own `step` then gives
  s'_sim and the reward, row by row in worker processes.
A dataset without a mapping gets the model DVR only, labelled as such: the same rule against the mean prediction
of a dynamics ensemble (`blocks.dynamics`) fitted on 90 % of the ORIGINAL data only (never an augmenter's model),
with the tolerance raised to the ensemble's own 99th-percentile error on the other 10 % (so that the original
data scores about 1 %, and the figure measures departures beyond the model's own error).
"""

from __future__ import annotations

import abc
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.dataset import Dataset
from bench.errors import BenchError

DEFAULT_TOLERANCE = 0.1
TOLERANCES = tuple(float(t) for t in np.round(np.logspace(-3, 1, 25), 8))
QUANTILES = (50, 90, 99)
CHUNK = 65536


# ------------------------------------------------------------------------------------------ simulators
@dataclass
class SimResult:
    next_obs: np.ndarray  # (N, d) float64; NaN where the state could not be simulated
    reward: np.ndarray | None  # (N,) where the env's reward is a function of (s, a)
    bad_state: np.ndarray  # (N,) bool: s non-finite, or inside a wall / outside the maze
    unrecoverable: np.ndarray  # (N,) bool: the observation does not determine the state


class Simulator(abc.ABC):
    """Rebuilds states from observations and steps the true dynamics for many rows at once."""

    mapping: str = ""

    @abc.abstractmethod
    def step(self, obs: np.ndarray, act: np.ndarray) -> SimResult:
        """The simulator's next observations (and rewards) from the states `obs` encode, stepped with `act`."""

    def in_wall(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(len(obs), bool)


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class MazeSimulator(Simulator):
    """OGBench point and ant mazes, stepped with `mujoco.rollout` (batched, in threads)."""

    def __init__(self, env, kind: str, threads: int | None = None):
        import mujoco

        u = env.unwrapped
        self.model, self.kind = u.model, kind
        self.nq, self.nv, self.nu = u.model.nq, u.model.nv, u.model.nu
        self.frame_skip = u.frame_skip
        self.threads = threads or _threads()
        self.datas = [mujoco.MjData(self.model) for _ in range(self.threads)]
        self.nstate = mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        template = np.zeros(self.nstate)
        mujoco.mj_getState(self.model, self.datas[0], template, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        self.template = template  # time, qpos, qvel, act, ... (MuJoCo's documented order)
        self.maze_map = np.asarray(u.maze_map)
        self.unit, self.off_x, self.off_y = float(u._maze_unit), float(u._offset_x), float(u._offset_y)
        self.mapping = ("qpos=observations; qpos += 0.2 a, qvel = 0, 5 physics steps (ogbench point)"
                        if kind == "point" else "qpos,qvel=observations; ctrl = a for frame_skip physics steps")

    def in_wall(self, obs: np.ndarray) -> np.ndarray:
        """Whether (x, y) = obs[:, :2] lies in a wall cell of the maze or outside it (OGBench's xy_to_ij)."""
        xy = np.asarray(obs[:, :2], np.float64)
        finite = np.isfinite(xy).all(1)
        xy = np.where(finite[:, None], xy, 0.0)
        i = np.floor((xy[:, 1] + self.off_y + 0.5 * self.unit) / self.unit).astype(np.int64)
        j = np.floor((xy[:, 0] + self.off_x + 0.5 * self.unit) / self.unit).astype(np.int64)
        rows, cols = self.maze_map.shape
        inside = (i >= 0) & (i < rows) & (j >= 0) & (j < cols)
        wall = np.ones(len(xy), bool)
        wall[inside] = self.maze_map[i[inside], j[inside]] == 1
        return wall | ~finite

    def step(self, obs: np.ndarray, act: np.ndarray) -> SimResult:
        from mujoco import rollout

        obs = np.asarray(obs, np.float64)
        act = np.asarray(act, np.float64)
        n = len(obs)
        finite = np.isfinite(obs).all(1) & np.isfinite(act).all(1)
        state = np.tile(self.template, (n, 1))
        if self.kind == "point":
            state[:, 1:1 + self.nq] = obs[:, :self.nq] + 0.2 * act
            state[:, 1 + self.nq:1 + self.nq + self.nv] = 0.0
            control = np.zeros((n, self.frame_skip, self.nu))
        else:
            state[:, 1:1 + self.nq] = obs[:, :self.nq]
            state[:, 1 + self.nq:1 + self.nq + self.nv] = obs[:, self.nq:self.nq + self.nv]
            control = np.repeat(act[:, None, :], self.frame_skip, axis=1)
        state[~finite] = self.template
        control[~finite] = 0.0
        out, _ = rollout.rollout(self.model, self.datas, state, control, nstep=self.frame_skip)
        last = out[:, -1]
        nxt = last[:, 1:1 + self.nq] if self.kind == "point" else last[:, 1:1 + self.nq + self.nv]
        nxt = nxt.copy()
        nxt[~finite] = np.nan
        return SimResult(nxt, None, ~finite | self.in_wall(obs), np.zeros(n, bool))


def _locomotion_rows(args) -> tuple[np.ndarray, np.ndarray]:
    """Worker: the env's own step from each rebuilt state (x position 0)."""
    env_id, kwargs, obs, act = args
    import gymnasium

    env = gymnasium.make(env_id, **kwargs).unwrapped
    env.reset(seed=0)
    nq = env.model.nq
    nxt = np.full((len(obs), obs.shape[1]), np.nan)
    rew = np.full(len(obs), np.nan)
    for k in range(len(obs)):  # the env's reward and observation code, exactly; MuJoCo has no batched env step
        if not (np.isfinite(obs[k]).all() and np.isfinite(act[k]).all()):
            continue
        env.set_state(np.concatenate([[0.0], obs[k, :nq - 1]]), obs[k, nq - 1:])
        o, r, *_ = env.step(act[k])
        nxt[k], rew[k] = o, r
    env.close()
    return nxt, rew


class LocomotionSimulator(Simulator):
    """Gymnasium MuJoCo locomotion (Hopper, Walker2d, HalfCheetah, ...): x position set to 0."""

    def __init__(self, env, env_id: str, kwargs: dict, workers: int | None = None):
        u = env.unwrapped
        if not getattr(u, "_exclude_current_positions_from_observation", False):
            raise BenchError(f"{env_id}: observations include the x position; obs_to_state 'qpos[1:],qvel' does "
                             f"not apply")
        self.env_id, self.kwargs = env_id, kwargs
        self.nq, self.nv = u.model.nq, u.model.nv
        if env.observation_space.shape != (self.nq - 1 + self.nv,):
            raise BenchError(f"{env_id}: observations of shape {env.observation_space.shape} are not "
                             f"(qpos[1:], qvel) = ({self.nq - 1 + self.nv},)")
        self.workers = workers or _threads()
        # Gymnasium's Hopper and Walker2d clip observed velocities at +-10 (`_get_obs`); HalfCheetah does not
        self.clips = env_id.split("-")[0] in ("Hopper", "Walker2d")
        self.mapping = "qpos[1:],qvel=observations; x position = 0 (not observed; the dynamics do not depend on it)"

    def step(self, obs: np.ndarray, act: np.ndarray) -> SimResult:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        obs = np.asarray(obs, np.float64)
        act = np.asarray(act, np.float64)
        parts = np.array_split(np.arange(len(obs)), max(1, min(self.workers, len(obs) // 2000 + 1)))
        jobs = [(self.env_id, self.kwargs, obs[p], act[p]) for p in parts]
        if len(jobs) == 1:
            results = [_locomotion_rows(jobs[0])]
        else:
            with ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn")) as pool:
                results = list(pool.map(_locomotion_rows, jobs))
        nxt = np.concatenate([r[0] for r in results])
        rew = np.concatenate([r[1] for r in results])
        finite = np.isfinite(obs).all(1) & np.isfinite(act).all(1)
        unrec = np.zeros(len(obs), bool)
        if self.clips:  # a velocity at the clip bound: the true velocity is unknown
            unrec = (np.abs(obs[:, self.nq - 1:]) >= 10.0 - 1e-6).any(1) & finite
        return SimResult(nxt, rew, ~finite, unrec)


def simulator_for(dataset: Dataset) -> Simulator | None:
    """The true simulator for the dataset's states, or None where its observations do not map to a state."""
    meta = dataset.meta
    mapping = meta.simulator.obs_to_state
    if not mapping or not meta.simulator.env_id:
        return None
    from bench.evaluate import make_env

    env = make_env(meta)
    try:
        if mapping == "qpos=observations":
            return MazeSimulator(env, "point")
        if mapping == "qpos,qvel=observations":
            return MazeSimulator(env, "ant")
        if mapping == "qpos[1:],qvel=observations":
            return LocomotionSimulator(env, meta.simulator.env_id, dict(meta.simulator.env_kwargs))
    finally:
        env.close()
    raise BenchError(f"{meta.name}: unknown obs_to_state mapping '{mapping}'")


# ------------------------------------------------------------------------------------------ the measurement
def _check_shapes(original: Dataset, generated: Dataset) -> None:
    for field in ("observations", "next_observations", "actions"):
        a, b = getattr(original, field), getattr(generated, field)
        if a.shape[1:] != b.shape[1:]:
            raise BenchError(f"generated data: '{field}' has rows of shape {b.shape[1:]}, the dataset "
                             f"'{original.meta.name}' has {a.shape[1:]}")


def delta_scale(original: Dataset) -> np.ndarray:
    """Per-dimension std of s' - s over the original data (floored at 1e-6: dimensions that never change)."""
    delta = np.asarray(original.next_observations, np.float64) - np.asarray(original.observations, np.float64)
    return np.maximum(delta.std(0), 1e-6)


def _errors(pred: np.ndarray, target: np.ndarray, scale: np.ndarray) -> np.ndarray:
    err = np.abs(np.asarray(target, np.float64) - pred) / scale
    out = err.max(1)
    out[~np.isfinite(out)] = np.inf
    return out


def summarise(err: np.ndarray, bad: np.ndarray, unrec: np.ndarray, tol: float, extra: dict,
              segments: np.ndarray | None = None, positions: np.ndarray | None = None) -> dict:
    """Rates and quantiles from per-row errors; `bad` rows are violations, `unrec` rows are left out."""
    keep = ~unrec
    checked = int(keep.sum())
    viol = (err > tol) | bad
    finite = err[keep & ~bad & np.isfinite(err)]
    out = {
        "tolerance": tol, "rows": int(len(err)), "checked": checked, "unrecoverable": int(unrec.sum()),
        "dvr": float(viol[keep].mean()) if checked else float("nan"), "violations": int(viol[keep].sum()),
        "invalid_states": int((bad & keep).sum()),
        "error_quantiles": {str(q): (float(np.percentile(finite, q)) if len(finite) else float("nan"))
                            for q in QUANTILES},
        "curve": {"tolerance": list(TOLERANCES),
                  "dvr": [float(((err[keep] > t) | bad[keep]).mean()) if checked else float("nan")
                          for t in TOLERANCES]},
        **extra,
    }
    if segments is not None:
        ids, seg = np.unique(segments[keep], return_inverse=True)
        seg_viol = np.zeros(len(ids), bool)
        np.logical_or.at(seg_viol, seg, viol[keep])
        pos = positions[keep]
        e = np.where(np.isfinite(err[keep]), err[keep], np.nan)
        top = int(pos.max()) + 1 if len(pos) else 0
        counts = np.bincount(pos, minlength=top)
        vsum = np.bincount(pos, weights=viol[keep].astype(float), minlength=top)
        esum = np.bincount(pos[np.isfinite(e)], weights=e[np.isfinite(e)], minlength=top)
        esq = np.bincount(pos[np.isfinite(e)], minlength=top)
        out["segments"] = {"count": int(len(ids)), "violating_share": float(seg_viol.mean()) if len(ids) else 0.0,
                           "position_rows": counts.tolist(),
                           "position_dvr": (vsum / np.maximum(counts, 1)).tolist(),
                           "position_mean_error": (esum / np.maximum(esq, 1)).tolist()}
    return out


def simulator_dvr(original: Dataset, generated: Dataset, tol: float = DEFAULT_TOLERANCE,
                  sim: Simulator | None = None, progress: Callable[[int, int], None] | None = None,
                  per_row: dict | None = None) -> dict:
    """The DVR of `generated` against the true simulator of `original` (module doc).  A `per_row` dict receives
    each row's error, invalid-state flag and unrecoverable flag (for analyses such as TATU's u against the
    true error)."""
    _check_shapes(original, generated)
    sim = sim or simulator_for(original)
    if sim is None:
        raise BenchError(f"{original.meta.name}: no simulator state can be rebuilt from its observations "
                         f"(meta.simulator.obs_to_state is not set); only the model DVR applies")
    t0 = time.perf_counter()
    n = len(generated)
    scale = delta_scale(original)
    ref_next = np.asarray(original.next_observations, np.float64)
    mu, sd = ref_next.mean(0), np.maximum(ref_next.std(0), 1e-6)
    err = np.empty(n)
    bad = np.empty(n, bool)
    unrec = np.empty(n, bool)
    gta = np.empty(n)
    rew_err = np.full(n, np.nan)
    chunk = CHUNK * max(1, getattr(sim, "threads", 1))
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        obs, act = generated.observations[sl], generated.actions[sl]
        nxt = np.asarray(generated.next_observations[sl], np.float64)
        res = sim.step(obs, act)
        err[sl] = _errors(res.next_obs, nxt, scale)
        bad[sl] = res.bad_state | sim.in_wall(nxt) | ~np.isfinite(nxt).all(1)
        unrec[sl] = res.unrecoverable
        gta[sl] = (((nxt - mu) / sd - (res.next_obs - mu) / sd) ** 2).mean(1)
        if res.reward is not None:
            rew_err[sl] = np.abs(np.asarray(generated.rewards[sl], np.float64) - res.reward)
        if progress:
            progress(sl.stop, n)
    low, high = original.meta.action_space.low, original.meta.action_space.high
    act = np.asarray(generated.actions)
    oob = float(((act < np.asarray(low)) | (act > np.asarray(high))).any(1).mean()) if low and high else 0.0
    keep = ~unrec & ~bad & np.isfinite(gta)
    seconds = time.perf_counter() - t0
    extra = {"source": "simulator", "mapping": sim.mapping,
             "gta_dynamic_mse": float(gta[keep].mean()) if keep.any() else float("nan"),
             "reward_mae": (float(np.nanmean(rew_err[~unrec])) if np.isfinite(rew_err[~unrec]).any() else None),
             "action_out_of_bounds": oob, "seconds": round(seconds, 3),
             "rows_per_second": round(n / max(seconds, 1e-9), 1)}
    if per_row is not None:
        per_row.update(error=err, invalid=bad, unrecoverable=unrec)
    segs, pos = _segments(generated)
    return summarise(err, bad, unrec, tol, extra, segs, pos)


def _segments(generated: Dataset) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Segment id and position in it of each row, for `trajectories` output (None for transitions)."""
    if generated.meta.kind != "trajectories":
        return None, None
    lengths = generated.episode_lengths
    seg = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(seg)) - np.repeat(generated.episode_offsets[:-1], lengths)
    return seg, pos


# ------------------------------------------------------------------------------------------ goal labels
def label_check(original: Dataset, generated: Dataset) -> dict:
    """Reward and terminal labels of `generated` against the task's true labels, which the DVR does not check:
    OGBench labels a singletask maze row by its own state s (success = |xy(s) - goal| <= tolerance; reward
    success - 1; terminal = success, the canonical form of its `masks`).  A state moved without relabelling
    (`noise`) or a label generated with the state (SER, model rollouts) can disagree with where the state is.
    A reward counts as a goal label when it is nearer 0 than -1 (generated rewards are not exact); its mean
    absolute error against the true label is reported beside."""
    from bench.data.ogbench_data import task_goal

    _check_shapes(original, generated)
    goal, tol = task_goal(original.meta)
    xy = np.asarray(generated.observations, np.float64)[:, :2]
    at_goal = np.linalg.norm(xy - goal, axis=1) <= tol
    rew = np.asarray(generated.rewards, np.float64)
    labelled = rew > -0.5  # nearer 0 (success) than -1: generated rewards (SER, model rollouts) are not exact
    term = np.asarray(generated.terminals, bool)
    n = len(generated)
    share = (lambda m: float(m.mean()) if n else float("nan"))
    return {
        "rows": n, "goal_xy": goal.tolist(), "goal_tolerance": tol,
        "reward_label_errors": share(labelled != at_goal),
        "reward_mae": float(np.abs(rew - (at_goal - 1.0)).mean()) if n else float("nan"),
        "terminal_label_errors": share(term != at_goal),
        "at_goal": share(at_goal), "labelled_goal": share(labelled),
        "goal_label_precision": float(at_goal[labelled].mean()) if labelled.any() else float("nan"),
        "goal_label_recall": float(labelled[at_goal].mean()) if at_goal.any() else float("nan"),
    }


# ------------------------------------------------------------------------------------------ model DVR
def model_dvr(original: Dataset, generated: Dataset, tol: float = DEFAULT_TOLERANCE, seed: int = 0,
              config: dict | None = None, device: str = "cpu") -> dict:
    """The same rule against a dynamics ensemble fitted on the original data only (cached per dataset)."""
    from blocks.dynamics import EnsembleConfig

    _check_shapes(original, generated)
    t0 = time.perf_counter()
    cfg = EnsembleConfig(**(config or {}))
    model, calib = _reference_model(original, cfg, seed, device)
    scale = delta_scale(original)
    threshold = max(tol, calib)
    pred, _ = model.predict(generated.observations, generated.actions, member="mean")
    err = _errors(pred.cpu().numpy().astype(np.float64), generated.next_observations, scale)
    bad = ~np.isfinite(np.asarray(generated.observations)).all(1) | ~np.isfinite(np.asarray(generated.actions)).all(1)
    segs, pos = _segments(generated)
    extra = {"source": "model", "mapping": "dynamics ensemble fitted on 90% of the original data",
             "model_threshold": threshold, "model_holdout_q99": calib, "seconds": round(time.perf_counter() - t0, 3)}
    out = summarise(err, bad, np.zeros(len(err), bool), threshold, extra, segs, pos)
    out["tolerance"] = tol
    return out


def _reference_model(original: Dataset, cfg, seed: int, device: str):
    """The ensemble fitted on 90 % of the original rows and its 99th-percentile error on the other 10 %."""
    import hashlib

    import torch

    from bench.io import atomic_open, ensure_dir
    from bench.paths import cache_dir
    from blocks.dynamics import GaussianEnsemble

    key = hashlib.sha256(json.dumps({"data": original.meta.content_hash, "cfg": asdict(cfg), "seed": seed},
                                    sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = cache_dir() / "dvr-models" / f"{key}.pt"
    if path.exists():
        state = torch.load(path, weights_only=False)
        return GaussianEnsemble.from_state(state["model"], device), state["q99"]
    gen = torch.Generator().manual_seed(seed)
    n = len(original)
    order = torch.randperm(n, generator=gen).numpy()
    n_val = max(1, n // 10)
    fit_rows, val_rows = np.sort(order[n_val:]), np.sort(order[:n_val])
    o, a = np.asarray(original.observations), np.asarray(original.actions)
    s2, r = np.asarray(original.next_observations), np.asarray(original.rewards)
    model = GaussianEnsemble(o.shape[1], a.shape[1], cfg)
    model.fit(o[fit_rows], a[fit_rows], s2[fit_rows], r[fit_rows], generator=gen, device=device)
    pred, _ = model.predict(o[val_rows], a[val_rows], member="mean")
    q99 = float(np.percentile(_errors(pred.cpu().numpy().astype(np.float64), s2[val_rows], delta_scale(original)),
                              99))
    ensure_dir(path.parent)
    with atomic_open(path, "wb") as f:
        torch.save({"model": model.to_state(), "q99": q99}, f)
    return model, q99


# ------------------------------------------------------------------------------------------ cache + plot
def dvr_path(aug_key: str, tol: float, source: str) -> Path:
    from bench.paths import cache_dir

    suffix = "" if tol == DEFAULT_TOLERANCE else f"-tol{tol:g}"
    return cache_dir() / "augmented" / f"{aug_key}.{source}-dvr{suffix}.json"


def measure(original: Dataset, generated: Dataset, aug_key: str, tol: float = DEFAULT_TOLERANCE,
            model: bool = False, progress=None, model_config: dict | None = None, seed: int = 0,
            device: str = "cpu") -> dict:
    """The DVR figures of one augmentation, computed once and kept beside it in the cache: the simulator
    figure where a simulator state can be rebuilt, the model figure where not (or where `model` asks)."""
    import fcntl

    from bench.io import ensure_dir, write_json

    has_sim = simulator_for_available(original)
    sources = (["simulator"] if has_sim else []) + (["model"] if model or not has_sim else [])
    out = {}
    for source in sources:
        path = dvr_path(aug_key, tol, source)
        ensure_dir(path.parent)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():
                try:
                    out[source] = json.loads(path.read_text())
                    continue
                except ValueError:
                    pass
            fig = (simulator_dvr(original, generated, tol, progress=progress) if source == "simulator"
                   else model_dvr(original, generated, tol, seed=seed, config=model_config, device=device))
            write_json(path, _json_safe(fig))
            out[source] = _json_safe(fig)
    return out


def simulator_for_available(dataset: Dataset) -> bool:
    s = dataset.meta.simulator
    return bool(s.obs_to_state and s.env_id)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def plot_positions(fig: dict, path: Path, title: str) -> Path | None:
    """Error and violation rate at each position along the generated segments (trajectories output), or the
    rate over tolerances (transitions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.io import atomic_open

    f, ax = plt.subplots(figsize=(6, 3.2))
    seg = fig.get("segments")
    if seg:
        ax.plot(seg["position_dvr"], label="DVR")
        ax.set_xlabel("position along the generated segment")
        ax2 = ax.twinx()
        ax2.plot(seg["position_mean_error"], color="tab:orange", label="mean error")
        ax2.set_ylabel("mean error (std of state change)")
    else:
        ax.semilogx(fig["curve"]["tolerance"], fig["curve"]["dvr"])
        ax.axvline(fig["tolerance"], color="grey", linestyle=":")
        ax.set_xlabel("tolerance (std of state change)")
    ax.set_ylabel("DVR")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    f.tight_layout()
    with atomic_open(path, "wb") as fh:
        f.savefig(fh, format="png", dpi=110)
    plt.close(f)
    return path
