"""Data-layer speed: maze generation vs the raw simulator, and loading a 1M-transition dataset.

    .venv/bin/python benchmarks/data_speed.py [--out reports/data_speed.md]

Every speed is a ratio against a baseline measured in the same run (the machines are shared and noisy):
- raw simulator: the point-maze env's own `step` with a fixed action, nothing else;
- generation with the env's per-step BFS oracle (what OGBench's script does) on one process;
- generation as `bench data make` does it (precomputed oracle) on one process and on every core.
Loading: `pointmaze-medium-navigate-v0` at OGBench's full size (1,000,000 transitions) generated here, read
(a) through OGBench's loader into the canonical dataset, (b) from the canonical memory-mapped `.npz`; each in a
fresh process, timing the load and its peak resident memory (Linux VmHWM, reset just before the load) above the
process's resident memory after its imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.data import pointmaze


def raw_steps_per_s(n: int = 60_000) -> float:
    env = pointmaze.make_env(pointmaze.MazeGenConfig())
    env.reset(seed=0)
    maze = env.unwrapped
    action = np.array([0.3, -0.2])
    t0 = time.perf_counter()
    for i in range(n):
        if i % 200 == 0:  # keep the point inside the maze, outside the timed physics cost
            maze.set_xy(np.array([8.0, 8.0]))
            action = -action
        maze.step(action)
    return n / (time.perf_counter() - t0)


def gen_steps_per_s(cfg, workers: int | None = None, env_oracle: bool = False) -> float:
    if env_oracle:
        t0 = time.perf_counter()
        out = pointmaze.generate_episodes(cfg, 0, 0, cfg.episodes, env_oracle=True)
        return len(out["terminals"]) / (time.perf_counter() - t0)
    train, val, sec = pointmaze.generate(replace(cfg, seed=1), workers=workers)
    return (len(train["terminals"]) + len(val["terminals"])) / sec


LOAD_CHILD = r"""
import json, sys, time, os
os.environ["AUGBENCH_OGBENCH_DIR"] = sys.argv[1]
os.environ["AUGBENCH_CACHE"] = sys.argv[2]
import numpy as np, ogbench, gymnasium  # imports are not part of the load
from bench import data
def status(key):  # kB -> bytes
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
base = status("VmRSS")
t0 = time.perf_counter()
ds = data.load("pointmaze-medium-navigate-v0", task=1)
ds.validate()
sec = time.perf_counter() - t0
peak = status("VmHWM") - base
nbytes = sum(int(np.asarray(v).nbytes) for v in ds.arrays().values())
print(json.dumps(dict(seconds=sec, peak=peak, nbytes=nbytes, n=len(ds))))
"""


def load_stats(ogb_dir: Path, cache: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", LOAD_CHILD, str(ogb_dir), str(cache)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="reports/data_speed.md")
    ap.add_argument("--work", default=None, help="scratch folder for the 1M-transition files (default: a temp dir)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    small = pointmaze.MazeGenConfig(maze="medium", kind="stitch", episodes=400, episode_steps=201)
    nav = pointmaze.MazeGenConfig(maze="medium", kind="navigate", episodes=60, episode_steps=1001)

    rows = []
    raw = raw_steps_per_s()
    rows.append(("raw simulator step (1 process)", raw, 1.0))
    for name, cfg in (("stitch", small), ("navigate", nav)):
        env_o = gen_steps_per_s(replace(cfg, episodes=cfg.episodes // 4), env_oracle=True)
        one = gen_steps_per_s(cfg, workers=1)
        many = gen_steps_per_s(cfg, workers=cores)
        rows.append((f"{name}: env BFS oracle per step, OGBench's way (1 process)", env_o, env_o / raw))
        rows.append((f"{name}: `bench data make`, precomputed oracle (1 process)", one, one / raw))
        rows.append((f"{name}: `bench data make`, precomputed oracle ({cores} processes)", many, many / raw))

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="augbench-bench-"))
    ogb = work / "ogbench"
    full = pointmaze.OGBENCH_PRESETS["pointmaze-medium-navigate-v0"]
    train, val, sec = pointmaze.generate(full, workers=cores)
    pointmaze.write(train, val, ogb / "pointmaze-medium-navigate-v0.npz", full, sec)
    full_rows = len(train["terminals"]) + len(val["terminals"])
    rows.append((f"full pointmaze-medium-navigate-v0 ({full_rows:,} rows, {cores} processes)",
                 full_rows / sec, full_rows / sec / raw))
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    loads = {"ogbench": load_stats(ogb, cache), "canonical": load_stats(ogb, cache)}

    cmd = "make bench-data  (= .venv/bin/python benchmarks/data_speed.py)"
    lines = [
        "# Data layer: generation and loading speed",
        "",
        f"Produced by `{cmd}` on {time.strftime('%Y-%m-%d')}; machine: {platform.processor() or platform.machine()}, "
        f"{cores} cores, Python {platform.python_version()}, numpy {np.__version__}, "
        f"mujoco {__import__('mujoco').__version__}, ogbench 1.2.2. Every ratio is against the raw simulator "
        "measured in the same run.",
        "",
        "## Generation (point maze, OGBench protocol)",
        "",
        "| what | steps/s | ratio to raw simulator |",
        "|---|---:|---:|",
    ]
    lines += [f"| {w} | {s:,.0f} | {r:.2f} |" for w, s, r in rows]
    lines += [
        "",
        "The raw simulator figure is the env's `step` alone. The generator also resets the env every episode "
        "(OGBench's reset runs extra physics steps), draws noise and looks up the subgoal; the env-oracle rows "
        "run a BFS over the whole maze at every step, as OGBench's script does.",
        "",
        "## Loading 1,000,000 transitions (pointmaze-medium-navigate-v0, singletask task 1)",
        "",
        "| path | transitions | seconds | peak memory above baseline | arrays' size | peak / arrays |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m, label in (("ogbench", "first load: OGBench loader (`ogbench.make_env_and_datasets`) -> canonical, "
                                 "saved to the cache"),
                     ("canonical", "later loads: the cached canonical `.npz`, memory-mapped, validated, "
                                   "hash-checked")):
        s = loads[m]
        lines.append(f"| {label} | {s['n']:,} | {s['seconds']:.2f} | {s['peak'] / 2**20:.0f} MiB | "
                     f"{s['nbytes'] / 2**20:.0f} MiB | {s['peak'] / s['nbytes']:.2f} |")
    lines += [
        "",
        "Goal: seconds, and peak memory under twice the arrays' size. Both are fresh processes calling "
        "`bench.data.load('pointmaze-medium-navigate-v0', task=1)`; the first finds an empty cache. OGBench's "
        "loader decompresses the file (train and val) and builds shifted copies (next observations, relabelled "
        "rewards), so the first load's peak is above the goal; every later load of the same file memory-maps the "
        "cached canonical arrays.",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
