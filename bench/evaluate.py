"""Evaluation in the real environment, seeded so that a deterministic policy gives the same figure.

- OGBench singletask data: success rate (%) in the task's own env (`...-singletask-taskN-v0`, up to 1000 steps,
  success within the goal tolerance).  OGBench draws start positions from numpy's global generator, so it is
  seeded per episode (and the caller's generator state is restored afterwards, so training is unaffected).
- Minari / D4RL-style data: D4RL normalised score, 100 * (return - ref_min) / (ref_max - ref_min).
"""

from __future__ import annotations

import numpy as np

from bench.dataset import DatasetMeta
from bench.errors import BenchError


def make_env(meta: DatasetMeta):
    import gymnasium

    if meta.simulator.kind == "ogbench":
        import ogbench.locomaze  # noqa: F401
        import ogbench.manipspace  # noqa: F401
    if not meta.simulator.env_id:
        raise BenchError(f"{meta.name}: the dataset names no environment to evaluate in")
    kwargs = dict(meta.simulator.env_kwargs)
    if meta.simulator.max_episode_steps:
        kwargs["max_episode_steps"] = meta.simulator.max_episode_steps
    return gymnasium.make(meta.simulator.env_id, **kwargs)


def check_evaluable(meta: DatasetMeta, build: bool = False) -> None:
    """Everything the evaluation needs, checked before the first gradient step: a task for OGBench data, an
    environment id, reference scores with max > min for a normalised score, and (`build`) an environment that
    can be built and whose spaces match the data."""
    if meta.source == "ogbench" and meta.task is None:
        raise BenchError(f"{meta.name}: goal-conditioned data needs a task for these trainers (--task N)")
    if not meta.simulator.env_id:
        raise BenchError(f"{meta.name}: the dataset names no environment to evaluate in (meta.simulator.env_id)")
    if meta.source != "ogbench":
        ref = meta.reference_scores
        if ref is None:
            raise BenchError(f"{meta.name}: no reference scores (ref_min_score/ref_max_score) to normalise the "
                             f"score with")
        if not (np.isfinite(ref.min) and np.isfinite(ref.max) and ref.max > ref.min):
            raise BenchError(f"{meta.name}: reference scores min {ref.min} and max {ref.max} cannot normalise a "
                             f"score (max must exceed min)")
    if not build:
        return
    try:
        env = make_env(meta)
    except BenchError:
        raise
    except Exception as e:  # noqa: BLE001  (gymnasium's NameNotFound, a bad kwarg, a missing asset)
        raise BenchError(f"{meta.name}: cannot build the evaluation environment '{meta.simulator.env_id}' "
                         f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    try:
        obs_shape, act_shape = tuple(env.observation_space.shape or ()), tuple(env.action_space.shape or ())
    finally:
        env.close()
    if obs_shape != tuple(meta.observation_space.shape) or act_shape != tuple(meta.action_space.shape):
        raise BenchError(f"{meta.name}: the evaluation environment '{meta.simulator.env_id}' has observations "
                         f"{obs_shape} and actions {act_shape}, the data {tuple(meta.observation_space.shape)} and "
                         f"{tuple(meta.action_space.shape)}")


def evaluate(trainer, meta: DatasetMeta, episodes: int, seed: int) -> dict:
    """Run `episodes` episodes; returns score (success % or normalised score), success rate, mean return."""
    check_evaluable(meta)
    env = make_env(meta)
    state = np.random.get_state()
    returns, successes = [], []
    try:
        for k in range(episodes):
            ep_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
            np.random.seed(ep_seed)
            obs, info = env.reset(seed=ep_seed)
            trainer.reset_episode()
            total, last_r, success, done = 0.0, 0.0, 0.0, False
            while not done:
                action = np.clip(trainer.act(obs, last_r), env.action_space.low, env.action_space.high)
                obs, last_r, terminated, truncated, info = env.step(action)
                total += float(last_r)
                success = max(success, float(info.get("success", 0.0)))
                done = terminated or truncated
            returns.append(total)
            successes.append(success)
    finally:
        np.random.set_state(state)
        env.close()
    mean_return = float(np.mean(returns))
    if meta.source == "ogbench":
        score = 100.0 * float(np.mean(successes))
    else:
        ref = meta.reference_scores
        score = 100.0 * (mean_return - ref.min) / (ref.max - ref.min)
    return {"score": score, "success_rate": float(np.mean(successes)), "return": mean_return,
            "episodes": episodes}
