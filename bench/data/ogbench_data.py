"""OGBench datasets read through OGBench's own loader (`ogbench.make_env_and_datasets(..., dataset_path=...)`),
the same code path for downloaded and locally generated files, converted once into the canonical Dataset.

Canonical labels: OGBench `terminals` mark trajectory ends (timeouts, never goal reaching); singletask
`masks` = 0 mark goal states, where bootstrapping stops, so they become canonical `terminals`.  Goal-
conditioned datasets carry no reward (zeros here; `meta.goal_conditioned` is True).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from bench.data import pointmaze
from bench.dataset import SCHEMA_VERSION, Dataset, DatasetMeta, ReferenceScores, SimulatorSpec, SpaceSpec, load
from bench.errors import BenchError, ConfigError, DatasetMissing
from bench.io import ensure_dir
from bench.paths import cache_dir, ogbench_dir

# OGBench's dataset catalogue (its README), used to recognise names and suggest close ones.
_ENV_TYPES = {
    "pointmaze": (("medium", "large", "giant", "teleport"), ("navigate", "stitch")),
    "antmaze": (("medium", "large", "giant", "teleport"), ("navigate", "stitch", "explore")),
    "humanoidmaze": (("medium", "large", "giant"), ("navigate", "stitch")),
    "antsoccer": (("arena", "medium"), ("navigate", "stitch")),
    "cube": (("single", "double", "triple", "quadruple"), ("play", "noisy")),
    "scene": (("",), ("play", "noisy")),
    "puzzle": (("3x3", "4x4", "4x5", "4x6"), ("play", "noisy")),
}


def catalogue() -> list[str]:
    names = []
    for env, (sizes, kinds) in _ENV_TYPES.items():
        for size in sizes:
            for kind in kinds:
                base = f"{env}-{size}-{kind}-v0" if size else f"{env}-{kind}-v0"
                names.append(base)
                if env in ("pointmaze", "antmaze", "humanoidmaze", "cube", "puzzle"):
                    names.append("visual-" + base)
    return names


_SINGLETASK = re.compile(r"^(?P<base>.+)-singletask(?:-task(?P<task>\d+))?-(?P<ver>v\d+)$")


def split_name(name: str, task: int | None = None) -> tuple[str, int | None]:
    """'X-singletask-task2-v0' -> ('X-v0', 2); 'X-v0' with task=2 -> ('X-v0', 2).  Task 'default' is 1
    for the mazes (OGBench's default-task table)."""
    m = _SINGLETASK.match(name)
    if m:
        base = f"{m['base']}-{m['ver']}"
        named = int(m["task"]) if m["task"] else 1
        if task is not None and task != named:
            raise ConfigError(f"'task' = {task} contradicts the task in the dataset name '{name}'", "request", "task")
        return base, named
    return name, task


def is_ogbench_name(name: str) -> bool:
    return split_name(name)[0] in catalogue()


def singletask_name(base: str, task: int) -> str:
    return base[: -len("-v0")] + f"-singletask-task{task}-v0"


def task_goal(meta: DatasetMeta) -> tuple[np.ndarray, float]:
    """(goal xy, success radius) of an OGBench singletask maze dataset: the task's goal cell centre (singletask
    envs add no goal noise) and the env's goal tolerance (1.0 for the point maze, 0.5 for the ant).  OGBench
    labels a row from its own state s: success = ||xy(s) - goal|| <= radius, reward = success - 1, and the
    canonical terminal (OGBench's mask 0) = success."""
    if meta.source != "ogbench" or meta.task is None or not (meta.simulator.obs_to_state or "").startswith("qpos"):
        raise BenchError(f"{meta.name}: only OGBench singletask maze data has a task goal")
    import gymnasium

    import ogbench.locomaze  # noqa: F401  (registers the maze envs)

    env = gymnasium.make(meta.simulator.env_id, **meta.simulator.env_kwargs)
    try:
        maze = env.unwrapped
        info = maze.task_infos[meta.task - 1]
        goal = np.asarray(info.get("goal_xy", maze.ij_to_xy(info["goal_ij"])), np.float64)
        return goal, float(maze._goal_tol)
    finally:
        env.close()


def check_raw_file(path: Path, need_state: bool) -> None:
    """Check an OGBench-format npz before handing it to OGBench's loader (which would fail with a traceback)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            need = ["observations", "actions", "terminals"] + (["qpos", "qvel"] if need_state else [])
            missing = [k for k in need if k not in keys]
            if missing:
                raise BenchError(f"{path}: missing key(s) {', '.join(missing)} (an OGBench dataset file has "
                                 f"observations, actions, terminals{', qpos, qvel' if need_state else ''})")
            arrays = {k: z[k] for k in need}
    except BenchError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise BenchError(f"{path}: truncated or corrupt npz ({e})") from None
    n = len(arrays["terminals"])
    if n == 0:
        raise BenchError(f"{path}: the dataset is empty (0 rows)")
    for k, v in arrays.items():
        if v.shape[0] != n:
            raise BenchError(f"{path}: '{k}' has {v.shape[0]} rows but 'terminals' has {n}")
    expected = {"actions": np.float32, "terminals": np.bool_, "qpos": np.float32, "qvel": np.float32}
    for k, dt in expected.items():
        if k in arrays and arrays[k].dtype != dt:
            raise BenchError(f"{path}: '{k}' has dtype {arrays[k].dtype}, OGBench files use {np.dtype(dt)}")
    if arrays["observations"].dtype not in (np.float32, np.uint8):
        raise BenchError(f"{path}: 'observations' has dtype {arrays['observations'].dtype}, OGBench files use "
                         f"float32 (uint8 for pixels)")
    for k in ("observations", "actions", "qpos", "qvel"):
        if k in arrays and arrays[k].dtype != np.uint8 and not np.isfinite(arrays[k]).all():
            row = int(np.flatnonzero(~np.isfinite(arrays[k].reshape(n, -1)).all(axis=1))[0])
            raise BenchError(f"{path}: '{k}' holds NaN or inf (first at row {row})")
    if not arrays["terminals"][-1]:
        raise BenchError(f"{path}: the last row does not end an episode ('terminals' must be True there)")
    if np.abs(arrays["actions"]).max() > 1.0 + 1e-6:
        row = int(np.flatnonzero((np.abs(arrays["actions"]) > 1.0 + 1e-6).any(axis=1))[0])
        raise BenchError(f"{path}: action at row {row} is outside the action space [-1, 1]")


def missing_file_message(path: Path, base: str) -> str:
    how = f"on a machine with network, `python -c \"import ogbench; ogbench.download_datasets(['{base}'], " \
          f"'{path.parent}')\"` downloads it"
    if base in pointmaze.OGBENCH_PRESETS:
        how += f", or `bench data make {base}` generates it here"
    return f"{path}: OGBench dataset file not found (looked in {path.parent}); {how}"


def load_ogbench(
    name: str,
    task: int | None = None,
    *,
    path: Path | None = None,
    display_name: str | None = None,
    split: str = "train",
    cache: bool = True,
    env_kwargs: dict | None = None,
) -> Dataset:
    """Load `name` (any OGBench dataset name, goal-conditioned or singletask) from `path` or the OGBench dir.

    The first load goes through OGBench's loader and keeps the canonical result in the augbench cache, keyed
    by the file's path, size and modification time, the task and the split; later loads memory-map it.
    """
    base, task = split_name(name, task)
    path = Path(path) if path is not None else ogbench_dir() / f"{base}.npz"
    if not path.exists():
        raise DatasetMissing(missing_file_message(path, base))
    if split not in ("train", "val"):
        raise ConfigError(f"'split' must be train or val, got '{split}'", "request", "split")
    env_kwargs = dict(env_kwargs or {})
    if not cache:
        return _convert(base, task, path, display_name, split, env_kwargs)
    val = pointmaze.val_path(path)
    stamp = [str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns, task, split, display_name,
             SCHEMA_VERSION, env_kwargs] + [[q.stat().st_size, q.stat().st_mtime_ns] for q in (val, pointmaze.sidecar_path(path))
                                if q.exists()]  # a new manifest (an interrupted generation) misses the cache
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]
    cached = cache_dir() / "canonical" / f"{path.stem}-{f'task{task}' if task else 'goals'}-{split}-{key}.npz"
    if cached.exists():
        try:
            return load(cached)
        except BenchError:
            pass  # a damaged cache entry is rebuilt from the source file
    ds = _convert(base, task, path, display_name, split, env_kwargs)
    ds.save(cached)
    return ds


def _convert(base: str, task: int | None, path: Path, display_name: str | None, split: str,
             env_kwargs: dict) -> Dataset:
    problem = pointmaze.check_set(path)
    if problem:
        raise BenchError(f"{path}: {problem}; regenerate the set with `bench data make {display_name or base} --force`")
    import gymnasium

    import ogbench

    val = pointmaze.val_path(path)
    if not val.exists():
        raise BenchError(f"{val}: the validation file beside {path.name} is missing (OGBench's loader reads both)")
    full = singletask_name(base, task) if task is not None else base
    if task is not None:
        family = "-".join(base.split("-")[:-2])  # 'pointmaze-medium-stitch-v0' -> 'pointmaze-medium'
        prefix = f"{family}-singletask-task"
        tasks = sorted(int(k[len(prefix):].split("-")[0]) for k in gymnasium.registry if k.startswith(prefix))
        if env_kwargs:  # another map in the same env (the arena): its own task list
            import ogbench.locomaze  # noqa: F401

            probe = gymnasium.make(f"{family}-singletask-v0", **env_kwargs)
            tasks = list(range(1, probe.unwrapped.num_tasks + 1))
            probe.close()
        if task not in tasks:
            known = ", ".join(map(str, tasks)) or "none"
            raise ConfigError(f"'task' = {task}: {base} has no such task (tasks: {known})", "request", "task")
    check_raw_file(path, need_state=True)
    check_raw_file(val, need_state=True)
    ensure_dir(cache_dir())
    env, train_d, val_d = ogbench.make_env_and_datasets(full, dataset_path=str(path), add_info=True, **env_kwargs)
    d = train_d if split == "train" else val_d
    space = env.action_space
    spec = env.spec
    env.close()
    n = len(d["actions"])
    if task is not None:
        rewards = d["rewards"]
        terminals = d["masks"] == 0.0
    else:
        rewards = np.zeros(n, np.float32)
        terminals = np.zeros(n, bool)
    sidecar = pointmaze.read_sidecar(path)
    meta = DatasetMeta(
        name=display_name or base,
        source="ogbench",
        task=task,
        goal_conditioned=task is None,
        observation_space=SpaceSpec(shape=tuple(d["observations"].shape[1:]), dtype="float32"),
        action_space=SpaceSpec(shape=tuple(space.shape), low=np.asarray(space.low, float).tolist(),
                               high=np.asarray(space.high, float).tolist()),
        simulator=SimulatorSpec(
            kind="ogbench", env_id=spec.id, max_episode_steps=spec.max_episode_steps, env_kwargs=env_kwargs,
            obs_to_state=("qpos=observations" if base.startswith("pointmaze") else
                          "qpos,qvel=observations" if base.startswith("antmaze") else None),
        ),
        reference_scores=ReferenceScores(min=0.0, max=1.0),  # success rate
        extra={"ogbench_name": full, "file": str(path), "split": split,
               "generated_by": sidecar.get("config") if sidecar else None},
    )
    return Dataset.from_episodes_arrays(
        observations=d["observations"], actions=d["actions"], rewards=rewards,
        next_observations=d["next_observations"], terminals=terminals, episode_ends=d["terminals"] == 1.0,
        meta=meta, qpos=d["qpos"], qvel=d["qvel"],
    ).validate(where=str(path))
