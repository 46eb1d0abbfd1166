"""Report build time over 10,000 runs (goal: under 30 s), against the time to read the results in the same run.

    .venv/bin/python benchmarks/report_speed.py [--runs 10000] [--out reports/report_speed.md]

Synthetic results shaped like a real study (10 datasets x 5 tasks x 4 algos x 5 augmenters x 10 seeds = 10,000
runs, 10 evaluations each), written as the parquet files `bench collect` makes, then `bench report` on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic(n_datasets=10, tasks=5, algos=("iql", "td3bc", "cql", "dt"),
              augs=("none", "noise", "ser", "tatu", "diffstitch"), seeds=10) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows, curves = [], []
    for d in range(n_datasets):
        dataset = f"pointmaze-{['medium', 'large'][d % 2]}-{d}-stitch-v0"
        for t in range(1, tasks + 1):
            for algo in algos:
                for k, aug in enumerate(augs):
                    if algo == "dt" and aug == "noise":
                        rows += [dict(status="not applicable", run_id=None, dataset=dataset, task=t, algo=algo,
                                      augmenter=aug, augmenter_label=aug, seed=s) for s in range(seeds)]
                        continue
                    for s in range(seeds):
                        rid = f"{d}-{t}-{algo}-{aug}-{s}"
                        score = float(np.clip(30 + 3 * k + rng.normal(0, 10), 0, 100))
                        rows.append(dict(status="done", run_id=rid, dataset=dataset, task=t, algo=algo, augmenter=aug,
                                         augmenter_label=aug, seed=s, score_last3_mean=score, score=score,
                                         metric="success rate (%)", device_name="CPU",
                                         **{"git.commit": "0" * 40, "git.dirty": False, "versions.d3rlpy": "2.8.1"}))
                        curves.append(pd.DataFrame({"run_id": rid, "step": np.arange(1, 11) * 100_000,
                                                    "score": score * np.linspace(0.1, 1, 10)}))
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="reports/report_speed.md")
    args = ap.parse_args()
    from bench.report.build import build_report, load

    work = Path(tempfile.mkdtemp(prefix="augbench-report-bench-"))
    frame, curves = synthetic()
    frame.to_parquet(work / "big.parquet", index=False)
    curves.to_parquet(work / "big-curves.parquet", index=False)
    t0 = time.perf_counter()
    f, c, name = load(work / "big.parquet")
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_report(f, c, work / "report", name)
    build_s = time.perf_counter() - t0
    n = int((frame["status"] == "done").sum())
    lines = [
        "# Report build time over 10,000 runs",
        "",
        f"Produced by `.venv/bin/python benchmarks/report_speed.py` on {time.strftime('%Y-%m-%d')}; "
        f"{platform.machine()}, {os.cpu_count()} cores. Synthetic results: {len(frame):,} runs ({n:,} finished, "
        f"{len(frame) - n:,} not applicable), {len(c):,} curve rows.",
        "",
        "| step | seconds | ratio to reading the results |",
        "|---|---:|---:|",
        f"| read the collected parquet files (baseline) | {read_s:.2f} | 1.0 |",
        f"| `bench report` (tables, statistics, published vs measured, plots) | {build_s:.2f} | {build_s / read_s:.1f} |",
        "",
        f"Goal: under 30 s for the report ({'met' if build_s < 30 else 'NOT met'}).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
