"""Minari datasets read with `minari.load_dataset` from MINARI_DATASETS_PATH, converted episode by episode.

d3rlpy's `get_minari` appends every episode's T+1 observations next to its T actions, which shifts episode k's
observations by k rows; this converter takes observations[:-1] as s and observations[1:] as s' per episode,
terminations as terminals and truncations as timeouts, so every episode aligns exactly.
"""

from __future__ import annotations

import numpy as np

from bench.dataset import Dataset, DatasetMeta, ReferenceScores, SimulatorSpec, SpaceSpec
from bench.errors import BenchError, DatasetMissing
from bench.paths import minari_dir

PREFIX = "minari:"


def is_minari_name(name: str) -> bool:
    return name.startswith(PREFIX) or "/" in name


def dataset_id(name: str) -> str:
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def local_ids() -> list[str]:
    try:
        import minari

        return sorted(minari.list_local_datasets())
    except Exception:  # an unreadable local folder must not break name suggestions
        return []


def load_minari(name: str) -> Dataset:
    import gymnasium
    import minari

    did = dataset_id(name)
    if did not in local_ids():
        raise DatasetMissing(f"Minari dataset '{did}' not found in {minari_dir()} (set MINARI_DATASETS_PATH; on a "
                         f"machine with network `minari download {did}` fetches it)")
    try:
        ds = minari.load_dataset(did)
    except Exception as e:
        raise BenchError(f"Minari dataset '{did}': cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(ds.observation_space, gymnasium.spaces.Box) or not isinstance(ds.action_space,
                                                                                      gymnasium.spaces.Box):
        raise BenchError(f"Minari dataset '{did}': only Box observation and action spaces are supported "
                         f"(got {type(ds.observation_space).__name__}, {type(ds.action_space).__name__})")
    obs, nxt, act, rew, term, ends = [], [], [], [], [], []
    for ep in ds.iterate_episodes():
        o = np.asarray(ep.observations)
        t = len(ep.actions)
        if o.shape[0] != t + 1:
            raise BenchError(f"Minari dataset '{did}': episode {ep.id} has {o.shape[0]} observations for {t} "
                             f"actions (expected {t + 1})")
        if t == 0:
            continue
        obs.append(o[:-1])
        nxt.append(o[1:])
        act.append(np.asarray(ep.actions).reshape(t, -1))
        rew.append(np.asarray(ep.rewards))
        terminated = np.asarray(ep.terminations, bool)
        term.append(terminated)
        end = np.zeros(t, bool)
        end[-1] = True  # a truncation, a termination, or a collector that stopped: the episode ends here
        ends.append(end)
    if not act:
        raise BenchError(f"Minari dataset '{did}': the dataset is empty (no steps)")
    md = ds.storage.metadata
    ref = None
    if md.get("ref_min_score") is not None and md.get("ref_max_score") is not None:
        ref = ReferenceScores(min=float(md["ref_min_score"]), max=float(md["ref_max_score"]))
    env_spec = ds.env_spec
    if md.get("eval_env_spec"):  # the environment the dataset says to evaluate in, when it names one
        try:
            env_spec = gymnasium.envs.registration.EnvSpec.from_json(md["eval_env_spec"])
        except Exception:
            pass
    space = ds.action_space
    meta = DatasetMeta(
        name=PREFIX + did,
        source="minari",
        observation_space=SpaceSpec(shape=tuple(ds.observation_space.shape), dtype="float32"),
        action_space=SpaceSpec(shape=tuple(space.shape), low=np.asarray(space.low, float).tolist(),
                               high=np.asarray(space.high, float).tolist()),
        simulator=SimulatorSpec(kind="gymnasium" if env_spec else "none",
                                env_id=env_spec.id if env_spec else None,
                                env_kwargs=dict(env_spec.kwargs) if env_spec else {},
                                max_episode_steps=env_spec.max_episode_steps if env_spec else None,
                                obs_to_state=_obs_to_state(env_spec)),
        reference_scores=ref,
        extra={"minari_id": did, "total_episodes": int(ds.total_episodes)},
    )
    return Dataset.from_episodes_arrays(
        observations=np.concatenate(obs), actions=np.concatenate(act), rewards=np.concatenate(rew),
        next_observations=np.concatenate(nxt), terminals=np.concatenate(term), episode_ends=np.concatenate(ends),
        meta=meta,
    ).validate(where=f"minari:{did}")


# Gymnasium MuJoCo locomotion whose observation is (qpos without the x position, qvel): the DVR rebuilds the state
# with x = 0 (bench.dvr).  Others (Ant and Humanoid add contact forces, Swimmer drops x and y) have no mapping.
_LOCOMOTION = ("Hopper", "Walker2d", "HalfCheetah")


def _obs_to_state(env_spec) -> str | None:
    if env_spec is None or env_spec.name not in _LOCOMOTION:
        return None
    if env_spec.kwargs.get("exclude_current_positions_from_observation", True) is False:
        return None
    return "qpos[1:],qvel=observations"
