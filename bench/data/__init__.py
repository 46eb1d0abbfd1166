"""Dataset names -> canonical Datasets.

Names:
- `toy-maze`: a small medium-maze stitch dataset generated here (CI and the demo); OGBench's own env and loader.
- any OGBench dataset name (`pointmaze-medium-stitch-v0`, `...-singletask-task2-v0`, ...), read from the OGBench
  directory; the point-maze ones can be generated here at OGBench's full size with `bench data make`, and
  `bench run` / `bench sweep` generate them (and `toy-maze`) on first use when they are missing (`ensure`).
- `minari:<id>` (or any id with a '/'): a local Minari dataset.
A task (`--task N`) turns a goal-conditioned OGBench name into its singletask variant.
"""

from __future__ import annotations

import difflib
import fcntl
from pathlib import Path

from bench.data import pointmaze
from bench.data.minari_data import is_minari_name, load_minari, local_ids
from bench.data.ogbench_data import catalogue, is_ogbench_name, load_ogbench, split_name
from bench.dataset import Dataset
from bench.dataset import load as load_file
from bench.errors import BenchError, ConfigError, DatasetMissing
from bench.io import ensure_dir
from bench.paths import cache_dir, ogbench_dir

# Small named presets generated here; each is an OGBench-format file read by OGBench's loader.
TOY_PRESETS: dict[str, pointmaze.MazeGenConfig] = {
    "toy-maze": pointmaze.MazeGenConfig(maze="medium", kind="stitch", episodes=300, episode_steps=201),
    # The demo's toy: OGBench's open arena, 4-cell stitch segments, its one task 10 cells from start to goal.
    "toy-arena": pointmaze.MazeGenConfig(maze="arena", kind="stitch", episodes=300, episode_steps=201),
}


def generable() -> dict[str, pointmaze.MazeGenConfig]:
    return {**TOY_PRESETS, **pointmaze.OGBENCH_PRESETS}


def known_names() -> list[str]:
    return list(TOY_PRESETS) + catalogue() + [f"minari:{i}" for i in local_ids()]


def unknown(name: str, what: str = "dataset") -> BenchError:
    close = difflib.get_close_matches(name, known_names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `bench data list` shows the known names"
    return BenchError(f"unknown {what} '{name}'{hint}")


def file_for(name: str) -> Path:
    """Where a generable dataset's (OGBench-format) train file lives."""
    if name in TOY_PRESETS:
        return cache_dir() / "datasets" / f"{name}.npz"
    return ogbench_dir() / f"{name}.npz"


def load(name: str, task: int | None = None, split: str = "train") -> Dataset:
    """A canonical Dataset from a name (see the module doc) or the path of a canonical `.npz` file."""
    if name.endswith(".npz"):
        if task is not None:
            raise ConfigError(f"'task': '{name}' is a canonical dataset file; its task is fixed", "request", "task")
        return load_file(name)
    if task is not None and task < 1:
        raise ConfigError(f"'task' must be a positive task id, got {task}", "request", "task")
    if name in TOY_PRESETS:
        cfg = TOY_PRESETS[name]
        path = file_for(name)
        if not path.exists():
            raise DatasetMissing(f"{path}: dataset '{name}' has not been generated yet; run `bench data make {name}`")
        return load_ogbench(cfg.ogbench_name, task, path=path, display_name=name, split=split,
                            env_kwargs=cfg.env_kwargs)
    if is_minari_name(name):
        if task is not None:
            raise ConfigError(f"'task': Minari dataset '{name}' has no tasks", "request", "task")
        return load_minari(name)
    if is_ogbench_name(name):
        return load_ogbench(name, task, split=split)
    raise unknown(name)


def make(name: str, cfg: pointmaze.MazeGenConfig | None = None, *, path: Path | None = None,
         workers: int | None = None, progress=None) -> tuple[Path, int, int, float]:
    """Generate a dataset the harness makes itself (train and val files, each written atomically):
    (train path, train rows, val rows, seconds)."""
    cfg = cfg or resolve_generable(name)
    path = path or file_for(name)
    ensure_dir(path.parent)  # an unwritable destination fails now, not after the generation
    train, val, seconds = pointmaze.generate(cfg, workers=workers, progress=progress)
    pointmaze.write(train, val, path, cfg, seconds)
    return path, len(train["terminals"]), len(val["terminals"]), seconds


def generable_base(name: str) -> str | None:
    """The generable file a dataset name reads (`pointmaze-...-singletask-task2-v0` reads its group's file)."""
    if name in generable():
        return name
    if is_ogbench_name(name):
        base, _ = split_name(name)
        if base in generable():
            return base
    return None


def ensure(name: str, say=None) -> bool:
    """Make a missing dataset that the harness generates itself, on first use (as OGBench downloads its files on
    first use); True when it generated one.  One process generates, under an flock that dies with its holder;
    the others wait and then find the file."""
    base = generable_base(name)
    if base is None:
        return False
    path = file_for(base)

    def whole() -> bool:
        return path.exists() and pointmaze.val_path(path).exists() and pointmaze.check_set(path) is None

    if whole():
        return False
    ensure_dir(path.parent)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if whole():
            return False
        what = "not generated yet" if not path.exists() else "an earlier generation was interrupted"
        if say:
            say(f"{name}: {what}; generating {base} now, once (`bench data make {base}` does the same)")
        make(base)
    return True


def resolve_generable(name: str) -> pointmaze.MazeGenConfig:
    gens = generable()
    if name in gens:
        return gens[name]
    base, _ = split_name(name)
    if base in gens:
        raise BenchError(f"'{name}': generate the dataset file '{base}' (singletask tasks are relabelled on load)")
    close = difflib.get_close_matches(name, list(gens), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; generable: {', '.join(gens)}"
    raise BenchError(f"cannot generate '{name}'{hint}")
