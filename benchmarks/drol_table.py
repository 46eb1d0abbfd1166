"""DROL vs IQL vs TD3+BC on the full-size point mazes: runs a study, then writes the comparison table.

    .venv/bin/python benchmarks/drol_table.py [--study sweeps/drol-pointmaze-cpu.yaml]
                                              [--out reports/drol_pointmaze.md] [--report reports/drol-pointmaze-cpu]

Generates the datasets if missing, runs `bench sweep STUDY` (resumes what is done), `bench collect`, and
`bench report STUDY --out REPORT` (the full report: tables, statistics, plots), then writes OUT: success rate
per task (mean and std over seeds, and each seed) and gradient steps/s of each trainer, with DROL's speed as a
ratio to IQL's measured in the same sweep on the same machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", default="sweeps/drol-pointmaze-cpu.yaml")
    ap.add_argument("--out", default="reports/drol_pointmaze.md")
    ap.add_argument("--report", default="reports/drol-pointmaze-cpu")
    args = ap.parse_args()
    bench = [sys.executable, "-m", "bench.cli"]
    study = yaml.safe_load(Path(args.study).read_text())
    for d in study["datasets"]:
        subprocess.run(bench + ["data", "make", d["name"]], check=True)
    t0 = time.time()
    subprocess.run(bench + ["sweep", args.study], check=True)
    wall = time.time() - t0
    subprocess.run(bench + ["collect", args.study], check=True)
    subprocess.run(bench + ["report", args.study, "--out", args.report], check=True)

    runs = pd.read_parquet(Path(os.environ.get("AUGBENCH_RESULTS") or "results") / f"{study['name']}.parquet")
    done = runs[runs.status == "done"]
    algos = [a["name"] for a in study["algos"]]
    score = "score_last3_mean"
    rows = []
    for (dataset, task), g in done.groupby(["dataset", "task"], sort=False):
        row = {"dataset": dataset, "task": int(task)}
        for algo in algos:
            s = g[g.algo == algo].sort_values("seed")[score]
            row[algo] = f"{s.mean():.1f} ± {s.std(ddof=1) if len(s) > 1 else 0:.1f} (n={len(s)}; " \
                        + ", ".join(f"{v:.0f}" for v in s) + ")"
        rows.append(row)
    table = pd.DataFrame(rows)
    speed = done.groupby(["dataset", "algo"])["grad_steps_per_s"].mean().unstack("algo")[algos]
    speed["drol / iql"] = speed["drol"] / speed["iql"]
    commits = sorted(set(done["git.commit"].astype(str)))
    steps, every = study["training"]["steps"], study["training"]["eval_every"]
    lines = [
        "# DROL vs IQL vs TD3+BC on OGBench point mazes (full size, generated here)",
        "",
        f"Command: `.venv/bin/python benchmarks/drol_table.py --study {args.study}` (study file `{args.study}`; "
        f"full report in `{args.report}/`).",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, no GPU; device {sorted(set(done.device))}; "
        f"sweep wall time {wall / 60:.1f} min for {len(done)} runs ({int((runs.status == 'done').sum())} done of "
        f"{len(runs)}); git {', '.join(c[:10] for c in commits)}; {time.strftime('%Y-%m-%d')}.",
        "",
        f"**Reduced budget on CPU:** {steps:,} gradient steps per run (the protocol is 1,000,000), evaluation every "
        f"{every:,} steps with {study['evaluation']['episodes']} episodes, seeds {study['seeds']}, task "
        f"{sorted({t for d in study['datasets'] for t in d['tasks']})} of each group only. The figures check that "
        "the three trainers run end to end on the same data and measure their speed; at this budget they say "
        "nothing about which method is better at convergence. The protocol-scale study is "
        "`sweeps/drol-pointmaze.yaml`.",
        "",
        f"Success rate (%), mean of the last three evaluations (here: of the {steps // every} evaluations), "
        "mean ± sample std over seeds, then each seed:",
        "",
        table.to_markdown(index=False),
        "",
        "Gradient steps per second as each run recorded it (training time only, mean over seeds; batch 256 for "
        "all three, IQL/TD3+BC 2 x 256 d3rlpy networks, DROL the paper's 4 x 512 actor and critics with K = 16 "
        "candidates per state). Runs go one after another, so whatever else used the machine meanwhile shows "
        "here; the controlled measurement, trainers alternating in one process, is "
        "[drol_speed.md](drol_speed.md) (`benchmarks/drol_speed.py`):",
        "",
        speed.reset_index().to_markdown(index=False, floatfmt=".2f"),
        "",
        "DROL config: preset `default` (the authors publish no preset for point mazes; every run's result records "
        "that warning): bc_coef 1.0, K 16, mean target, gamma 0.99, one Adam 3e-4, Polyak 0.005, one random "
        "latent per evaluation step.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
