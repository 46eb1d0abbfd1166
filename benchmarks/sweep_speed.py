"""Sweep machinery costs, each as a ratio against a baseline measured in the same run.

    .venv/bin/python benchmarks/sweep_speed.py [--runs 8] [--out reports/sweep_speed.md]

1. Launcher overhead per run: N tiny runs (1 gradient step, 1 evaluation episode) through `bench sweep` with the
   local executor (1 worker) against the same N runs called in one process (`bench.run.execute` in a loop).
2. Deciding what is left in a 10,000-run study (half of it finished): expansion + one listing of results/runs,
   in a fresh process (imports included) and again warm.
3. Packed versus one-run-per-job execution on one machine through the real SLURM cluster (`.ci/slurm.sh start`):
   the same N runs as N one-run jobs or as N/4 jobs of 4 runs in parallel processes.  Skipped, with the reason,
   where no cluster answers.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SEEDS = ", ".join(str(s) for s in range(100))


def study_text(name: str, seeds: str, executor: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        name: {name}
        datasets:
          - {{name: toy-maze, tasks: [1]}}
        augmenters:
          - {{name: none}}
        algos:
          - {{name: iql, config: {{batch_size: 16, hidden_units: [32, 32]}}}}
        seeds: [{seeds}]
        training: {{steps: 1}}
        evaluation: {{episodes: 1}}
        executor:
          kind: {executor}
          workers: 1
        """) + extra


BIG = textwrap.dedent(f"""\
    name: big
    datasets:
      - {{name: toy-maze, tasks: [1, 2, 3, 4, 5]}}
    augmenters:
      - {{name: none}}
      - {{name: noise, label: n1, config: {{scale: 0.01}}}}
      - {{name: noise, label: n2, config: {{scale: 0.02}}}}
      - {{name: noise, label: n3, config: {{scale: 0.03}}}}
      - {{name: noise, label: n4, config: {{scale: 0.04}}}}
    algos: [{{name: iql}}, {{name: td3bc}}, {{name: cql}}, {{name: dt}}]
    seeds: [{SEEDS}]
    training: {{steps: 1000}}
    skip_inapplicable: true
    """)

DECIDE = r"""
import sys, time
t0 = time.perf_counter()
from bench import sweep
_, runs = sweep.expand(sys.argv[1])
todo = sweep.select(runs, sweep.run_states(), False, False, None)
print(len(runs), len(todo), time.perf_counter() - t0)
"""


def timed(cmd, env) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--out", default="reports/sweep_speed.md")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="augbench-sweep-bench-"))
    env = {**os.environ, "AUGBENCH_RESULTS": str(work / "results")}
    os.environ.update(env)
    bench = [sys.executable, "-m", "bench.cli"]
    subprocess.run(bench + ["data", "make", "toy-maze"], check=True, env=env, stdout=subprocess.DEVNULL)
    seeds = ", ".join(str(s) for s in range(args.runs))
    rows = []

    # 1. launcher overhead
    from bench.run import RunRequest, execute

    t0 = time.perf_counter()
    for seed in range(args.runs):
        execute(RunRequest(dataset="toy-maze", task=1, algo="iql", seed=seed, steps=1, eval_episodes=1,
                           algo_config={"batch_size": 16, "hidden_units": [32, 32]}), root=work / "base")
    base = time.perf_counter() - t0
    p = work / "local.yaml"
    p.write_text(study_text("local", seeds, "local"))
    local = timed(bench + ["sweep", str(p)], env)
    rows.append(("launcher: local executor vs in-process loop", f"{args.runs} runs", base, local,
                 f"{(local - base) / args.runs:.2f} s per run"))

    # 2. deciding what is left in 10,000 runs, half finished
    big = work / "big.yaml"
    big.write_text(BIG)
    from bench import sweep

    _, runs = sweep.expand(big)
    for r in runs[::2]:
        if r.run_id:
            d = work / "results" / "runs" / r.run_id
            d.mkdir(parents=True, exist_ok=True)
            (d / "result.json").write_text("{}")
    out = subprocess.run([sys.executable, "-c", DECIDE, str(big)], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    cold = float(out[2])
    t0 = time.perf_counter()
    _, runs = sweep.expand(big)
    todo = sweep.select(runs, sweep.run_states(), False, False, None)
    warm = time.perf_counter() - t0
    rows.append(("decide what is left (10,000 runs, half done)", f"{len(runs):,} runs, {len(todo):,} left",
                 cold, warm, "cold process vs warm"))

    # 3. packed vs one run per job on SLURM
    from bench.sweep import slurm_available

    reason = slurm_available()
    if reason is None:
        times = {}
        for per_job, cpus in ((1, 1), (4, 2)):
            p = work / f"slurm{per_job}.yaml"
            p.write_text(study_text(f"slurm{per_job}", seeds, "slurm",
                                    f"  slurm: {{cpus_per_task: {cpus}, mem_gb: 1, runs_per_job: {per_job}, "
                                    f"array_parallelism: 8}}\n"))
            shutil.rmtree(work / "results" / "runs", ignore_errors=True)
            times[per_job] = timed(bench + ["sweep", str(p)], env)
        rows.append(("SLURM: one run per job vs 4 runs packed per job", f"{args.runs} runs", times[1], times[4],
                     f"throughput x{times[1] / times[4]:.2f} packed"))
    else:
        rows.append(("SLURM: packed vs one run per job", "skipped", float("nan"), float("nan"), reason))

    lines = [
        "# Sweep machinery: launcher overhead, deciding what is left, packed SLURM jobs",
        "",
        f"Produced by `.venv/bin/python benchmarks/sweep_speed.py --runs {args.runs}` on {time.strftime('%Y-%m-%d')}; "
        f"{platform.machine()}, {os.cpu_count()} cores, CPU only (no GPU was lent to this session). Runs are tiny "
        "(1 gradient step of a 32x32 IQL, one 1000-step evaluation episode) so that the machinery dominates.",
        "",
        "| what | size | baseline (s) | measured (s) | ratio | note |",
        "|---|---|---:|---:|---:|---|",
    ]
    for what, size, a, b, note in rows:
        ratio = b / a if a == a and a > 0 else float("nan")
        lines.append(f"| {what} | {size} | {a:.2f} | {b:.2f} | {ratio:.2f} | {note} |")
    lines += ["", "Baselines: row 1, the same runs in one process; row 2, a fresh process (imports of torch, "
              "gymnasium and OGBench included) against the same decision warm; row 3, one run per SLURM job.", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
