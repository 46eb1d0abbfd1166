"""DROL's gradient steps/s next to IQL's and TD3+BC's, as ratios measured in one process, rounds alternating.

    .venv/bin/python benchmarks/drol_speed.py [--device cpu:0] [--rounds 3] [--seconds 20]

On the full-size pointmaze-medium-navigate-v0, task 1 (generated if missing), each trainer is built once with its
sweep config (IQL/TD3+BC `maze`, DROL `default`: the paper's 4 x 512 networks, K = 16, batch 256 for all), then
the trainers take turns training for about `--seconds` each, `--rounds` times; the figure per trainer is the
median over rounds of steps / training seconds, and each ratio divides medians of the same run (the machine is
shared and noisy; alternating keeps drift out of the ratio).  Writes reports/drol_speed.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu:0")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out", default="reports/drol_speed.md")
    args = ap.parse_args()
    subprocess.run([sys.executable, "-m", "bench.cli", "data", "make", "pointmaze-medium-navigate-v0"], check=True)

    import torch

    from algos import TRAINERS
    from algos.base import resolve
    from bench import data, provenance

    ds = data.load("pointmaze-medium-navigate-v0", 1)
    configs = {"iql": {"preset": "maze"}, "td3bc": {"preset": "maze"}, "drol": {"preset": "default"}}
    trainers = {}
    for name, cfg in configs.items():
        cls = TRAINERS.get(name)
        t = cls(resolve(cls.config_class, cls.presets, cfg, name), seed=0, device=args.device)
        t.build(ds)
        t.train(2)  # warm-up (first-call allocations)
        trainers[name] = t
    rates: dict[str, list[float]] = {n: [] for n in trainers}
    for _ in range(args.rounds):
        for name, t in trainers.items():
            steps, spent = 0, 0.0
            chunk = 10 if name == "drol" else 50
            while spent < args.seconds:
                t0 = time.perf_counter()
                t.train(chunk)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                spent += time.perf_counter() - t0
                steps += chunk
            rates[name].append(steps / spent)
    med = {n: statistics.median(r) for n, r in rates.items()}
    rows = [f"| {n} | {med[n]:.1f} | {', '.join(f'{r:.1f}' for r in rates[n])} | {med[n] / med['iql']:.3f} |"
            for n in trainers]
    lines = [
        "# DROL gradient steps/s next to IQL and TD3+BC",
        "",
        f"Command: `.venv/bin/python benchmarks/drol_speed.py --device {args.device} --rounds {args.rounds} "
        f"--seconds {args.seconds:g}`",
        f"Machine: {provenance.device_name(args.device)}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); {time.strftime('%Y-%m-%d')}.",
        "Data: pointmaze-medium-navigate-v0 (full size, generated here), singletask task 1; batch 256 for all; "
        "IQL and TD3+BC are d3rlpy 2.8.1 with 2 x 256 networks (`maze` preset), DROL the paper's 4 x 512 actor "
        "and two critics with K = 16 candidates per state. Batches come from the same array sampler (bench.batches).",
        "",
        "| trainer | steps/s (median) | each round | ratio to IQL |",
        "|---|---|---|---|",
        *rows,
        "",
        "The trainers take turns in one process, so the ratios are measured under the same conditions. "
        "DROL's actor runs on K x 256 = 4,096 state-latent pairs per step through four 512-wide layers, "
        "which is where its time goes on a CPU.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
