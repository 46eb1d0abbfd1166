"""Throughput on one accelerator: one run, N runs packed on the device, and d3rlpy's default beside them.

    .venv/bin/python benchmarks/gpu_throughput.py --device cuda:0 [--algos iql,td3bc,drol] [--packed 1,2,4,8,16]
        [--seconds 20] [--out reports/gpu_throughput.md]

For each trainer and N in `--packed`, N worker processes share the device (as `runs_per_job` packing does on
SLURM); each builds the trainer on toy-maze singletask task 1 with augbench's sampler (arrays uploaded to the
device once, batches gathered there), warms up, waits for a common start time, trains for `--seconds` and
reports its gradient steps; the aggregate is the sum of steps/s.  d3rlpy's default is one process running
`algo.fit` on `to_d3rlpy()` (its replay buffer, batches built in Python and copied per step).  For d3rlpy's
algorithms `compile_graph` (torch.compile + CUDA graphs) is measured on and off with N = 1.  Everything is
measured in the same run, so the ratios hold on a shared machine.  `--device cpu:0` runs the same protocol on
the CPU (a smoke check of the script, not a figure).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def build(algo: str, device: str, compile_graph: bool):
    from algos import TRAINERS
    from algos.base import resolve
    from bench import data

    ds = data.load("toy-maze", 1)
    cls = TRAINERS.get(algo)
    overrides = {"preset": "default"} if algo == "drol" else {"compile_graph": compile_graph}
    cfg = resolve(cls.config_class, cls.presets, overrides, algo)
    trainer = cls(cfg, seed=0, device=device)
    return trainer, ds


def worker(algo: str, device: str, side: str, compile_graph: bool, start_at: float, seconds: float,
           n_procs: int) -> None:
    import torch

    from bench.d3 import d3rlpy

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_procs))  # packed processes share the CPU cores
    trainer, ds = build(algo, device, compile_graph)
    chunk = 200 if device.startswith("cuda") else 10
    if side == "augbench":
        trainer.build(ds)
        step = trainer.train
    else:
        buf = ds.to_d3rlpy()
        d3rlpy.seed(0)
        algo_obj = trainer.make_d3rlpy_config(ds).create(device=device)
        algo_obj.build_with_dataset(buf)

        def step(n):
            algo_obj.fit(buf, n_steps=n, n_steps_per_epoch=n, logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
                         show_progress=False, save_interval=10**9)
    step(chunk)  # warm-up (and graph capture with compile_graph)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    time.sleep(max(0.0, start_at - time.time()))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step(chunk)
        steps += chunk
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    print(json.dumps({"steps": steps, "seconds": time.perf_counter() - t0}))


def measure(algo: str, n: int, side: str, compile_graph: bool, args) -> tuple[float, list[float]]:
    """(aggregate steps/s, per-process steps/s) of n processes started together."""
    start_at = time.time() + args.lead + 5 * n  # time to import, build and warm up before the common start
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", algo, args.device, side, str(int(compile_graph)),
                               str(start_at), str(args.seconds), str(n)], stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    rates = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed ({algo}, n={n}, {side}); rerun it alone to see why")
        r = json.loads(out.strip().splitlines()[-1])
        rates.append(r["steps"] / r["seconds"])
    return sum(rates), rates


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        algo, device, side, cg, start_at, seconds, n_procs = sys.argv[2:9]
        worker(algo, device, side, bool(int(cg)), float(start_at), float(seconds), int(n_procs))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--algos", default="iql,td3bc,drol")
    ap.add_argument("--packed", default="1,2,4,8,16")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--lead", type=float, default=60.0, help="seconds from launch to the common start")
    ap.add_argument("--out", default="reports/gpu_throughput.md")
    args = ap.parse_args()
    subprocess.run([sys.executable, "-m", "bench.cli", "data", "make", "toy-maze"], check=True)
    from bench import provenance

    t_start = time.time()
    rows = []
    packed = [int(x) for x in args.packed.split(",")]
    for algo in args.algos.split(","):
        base = None
        if algo != "drol":  # d3rlpy's default: one process, its own fit on its replay buffer
            base, _ = measure(algo, 1, "d3rlpy", False, args)
            rows.append(f"| {algo} | d3rlpy `fit` (default) | 1 | {base:.0f} | {base:.0f} | 1.00x |")
        for n in packed:
            agg, each = measure(algo, n, "augbench", False, args)
            rel = f"{agg / base:.2f}x" if base else "-"
            rows.append(f"| {algo} | augbench | {n} | {agg:.0f} | {statistics.median(each):.0f} | {rel} |")
            print(rows[-1], flush=True)
        if base is not None and args.device.startswith("cuda"):  # compile_graph is a no-op on the CPU
            for side in ("d3rlpy", "augbench"):
                agg, _ = measure(algo, 1, side, True, args)
                rows.append(f"| {algo} | {side}, compile_graph on | 1 | {agg:.0f} | {agg:.0f} | {agg / base:.2f}x |")
                print(rows[-1], flush=True)
    lines = [
        "# Throughput on one accelerator: packed runs versus d3rlpy's default",
        "",
        f"Command: `.venv/bin/python benchmarks/gpu_throughput.py --device {args.device} --algos {args.algos} "
        f"--packed {args.packed} --seconds {args.seconds:g} --lead {args.lead:g}` ({(time.time() - t_start) / 60:.1f} min)",
        f"Device: {provenance.device_name(args.device)}; {os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d')}; "
        f"git {provenance.git_state()['commit'][:10]}. Data: toy-maze singletask task 1; presets `maze` "
        "(DROL `default`), batch 256.",
        "",
        "| trainer | path | processes | aggregate steps/s | per process (median) | vs d3rlpy default |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
        "Goal: >= 10x d3rlpy's default aggregate per GPU.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
