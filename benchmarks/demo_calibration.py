"""Demo calibration (issue 18): which toy task and IQL budget make `none` + IQL reach a clearly non-zero success
within the demo's budget on a 2-core CPU.  Each candidate is one `bench run` (seed 0, 10 evaluation episodes at
every evaluation), in a results folder of its own; the table gives the success rate at each evaluation and the
wall time.

    .venv/bin/python benchmarks/demo_calibration.py [--out reports/demo-calibration.md] [--only NAME ...]

Candidates: the CI toy maze (OGBench's medium maze, 300 x 201-step stitch episodes) on task 1 (goal 10 BFS cells
from the start, across walls) and task 3 (6 cells, the shortest medium-maze task), at IQL's published maze
preset and at faster-learning variants; the toy arena (OGBench's open arena map, same episodes, goal 10 cells
away) at the maze preset and at the `toy` preset the demo uses.  Threads: 1 per run (`OMP_NUM_THREADS=1`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# name -> (dataset, task, IQL config, steps, eval every)
CANDIDATES = {
    "maze-t1-published": ("toy-maze", 1, {"preset": "maze"}, 20000, 5000),
    "maze-t3-published": ("toy-maze", 3, {"preset": "maze"}, 6000, 2000),
    "maze-t3-toy": ("toy-maze", 3, {"preset": "toy"}, 20000, 5000),
    "arena-t1-published": ("toy-arena", 1, {"preset": "maze"}, 6000, 2000),
    "arena-t1-toy": ("toy-arena", 1, {"preset": "toy"}, 4000, 1000),
}


def goal_cells(dataset: str, task: int) -> int:
    """BFS cells from the task's start cell to its goal cell."""
    import gymnasium

    import ogbench.locomaze  # noqa: F401

    from bench import data
    from bench.data.pointmaze import bfs_distances

    cfg = data.TOY_PRESETS[dataset]
    env = gymnasium.make(cfg.env_id, **cfg.env_kwargs)
    try:
        maze = env.unwrapped
        info = maze.task_infos[task - 1]
        dist, _ = bfs_distances(np.asarray(maze.maze_map), tuple(info["init_ij"]))
        return int(dist[tuple(info["goal_ij"])])
    finally:
        env.close()


def run(name: str, results: Path) -> dict:
    dataset, task, config, steps, every = CANDIDATES[name]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "AUGBENCH_RESULTS": str(results / name)}
    cmd = [sys.executable, "-m", "bench.cli", "run", "--dataset", dataset, "--task", str(task), "--algo", "iql",
           "--algo-config", json.dumps(config), "--seed", "0", "--steps", str(steps), "--eval-every", str(every),
           "--eval-episodes", "10", "--device", "cpu:0"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{name}: bench run failed: {res.stderr.strip().splitlines()[-1:]}")
    curve = next((results / name / "runs").glob("*/curve.csv")).read_text().strip().splitlines()[1:]
    points = [(int(r.split(",")[0]), float(r.split(",")[2]) * 100) for r in curve]
    return {"name": name, "dataset": dataset, "task": task, "cells": goal_cells(dataset, task), "config": config,
            "steps": steps, "curve": points, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/demo-calibration.md")
    ap.add_argument("--only", nargs="*", choices=list(CANDIDATES), default=list(CANDIDATES))
    args = ap.parse_args()
    from bench import data
    from bench.io import write_bytes

    for name in {CANDIDATES[n][0] for n in args.only}:
        if not data.file_for(name).exists():
            data.make(name)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            rows.append(run(name, Path(tmp)))
            print(f"{name}: {rows[-1]['curve']} ({rows[-1]['wall_s']:.0f} s)", flush=True)
    lines = ["# Demo calibration: where `none` + IQL leaves zero within the demo's budget", "",
             f"Command: `.venv/bin/python benchmarks/demo_calibration.py{' --only ' + ' '.join(args.only) if args.only != list(CANDIDATES) else ''}`",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, 1 thread per run, CPU only; seed 0, 10 "
             "evaluation episodes per evaluation (OGBench's singletask env, up to 1000 steps). Reduced CPU settings: "
             "toy datasets of 300 x 201-step stitch episodes, not OGBench's sizes.", "",
             "| candidate | dataset | task | goal (BFS cells) | IQL config | success % at step | wall s |",
             "|---|---|---:|---:|---|---|---:|"]
    for r in rows:
        curve = ", ".join(f"{s}: {v:.0f}" for s, v in r["curve"])
        lines.append(f"| {r['name']} | {r['dataset']} | {r['task']} | {r['cells']} | `{json.dumps(r['config'])}` | "
                     f"{curve} | {r['wall_s']:.0f} |")
    lines += ["", "Stitch episodes run 4 BFS cells from a random start, so every goal above lies beyond one segment.",
              "The `toy` preset is not a published setting: IQL's maze preset with a 10x faster target network "
              "(tau 0.05) and 64 x 64 MLPs (algos/iql.py).", ""]
    write_bytes(ROOT / args.out, "\n".join(lines).encode())
    print(f"table: {args.out}")


if __name__ == "__main__":
    main()
