"""Harness cost: gradient steps/s of each trainer through `bench run` (bench.run.execute) versus d3rlpy called
directly on the same data and device.

    .venv/bin/python benchmarks/harness_overhead.py [--device cpu:0] [--repeats 3] [--out reports/harness_overhead.md]

Both sides train the same d3rlpy config on the toy maze's singletask task 1 (generated if missing).  The direct
side is `config.create(device).fit(mdp, n_steps=N, n_steps_per_epoch=N)` with d3rlpy's NoopAdapterFactory,
timed around `fit`; the harness side is a whole `bench run` (dataset load, augmentation, buffers, evaluation),
whose result.json reports gradient steps/s over its training time only.  Runs alternate (direct, harness,
direct, ...) so that machine noise hits both; the table gives the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = {"iql": 1000, "td3bc": 1000, "cql": 200, "dt": 40}


def direct(algo: str, steps: int, device: str, seed: int) -> float:
    from algos import TRAINERS
    from algos.base import resolve
    from bench import data
    from bench.d3 import d3rlpy

    ds = data.load("toy-maze", 1)
    cls = TRAINERS.get(algo)
    trainer = cls(resolve(cls.config_class, cls.presets, {}, algo), seed=seed, device=device)
    d3rlpy.seed(seed)
    mdp = ds.to_d3rlpy()
    algo_obj = trainer.make_d3rlpy_config(ds).create(device=device)
    algo_obj.build_with_dataset(mdp)
    t0 = time.perf_counter()
    algo_obj.fit(mdp, n_steps=steps, n_steps_per_epoch=steps, logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
                 show_progress=False)
    return steps / (time.perf_counter() - t0)


def harness(algo: str, steps: int, device: str, seed: int) -> float:
    from bench.run import RunRequest, execute

    _, result = execute(RunRequest(dataset="toy-maze", task=1, algo=algo, steps=steps, eval_episodes=1,
                                   seed=seed, device=device), force=True)
    return result["grad_steps_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu:0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="reports/harness_overhead.md")
    args = ap.parse_args()
    os.environ.setdefault("AUGBENCH_RESULTS", tempfile.mkdtemp(prefix="augbench-overhead-"))
    subprocess.run([sys.executable, "-m", "bench.cli", "data", "make", "toy-maze"], check=True)
    from bench.provenance import device_name

    rows = []
    for algo, steps in STEPS.items():
        d, h = [], []
        for r in range(args.repeats):
            d.append(direct(algo, steps, args.device, seed=r))
            h.append(harness(algo, steps, args.device, seed=r))
        md, mh = statistics.median(d), statistics.median(h)
        rows.append((algo, steps, md, mh, mh / md))
        print(rows[-1], flush=True)
    lines = [
        "# Harness cost: `bench run` versus d3rlpy called directly",
        "",
        f"Produced by `.venv/bin/python benchmarks/harness_overhead.py --device {args.device} --repeats "
        f"{args.repeats}` on {time.strftime('%Y-%m-%d')}; device: {device_name(args.device)}; data: toy-maze "
        "singletask task 1; default (maze) presets; medians over alternating runs.",
        "",
        "| trainer | gradient steps per run | d3rlpy direct (steps/s) | through `bench run` (steps/s) | ratio | harness cost |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {a} | {s} | {d:.1f} | {h:.1f} | {r:.3f} | {100 * (1 - r):+.1f}% |" for a, s, d, h, r in rows]
    lines += ["", "Goal: harness cost under 5% (ratio above 0.95). A negative cost is noise in the harness's favour.",
              "No GPU was lent to the session that produced this table; the same script takes `--device cuda:0`.", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
