"""Learning check: where `none` + a trainer (IQL by default) leaves zero on a full-size OGBench point maze
generated here (by default pointmaze-medium-navigate-v0, singletask task 1).

    .venv/bin/python benchmarks/learning_check.py [--dataset pointmaze-medium-navigate-v0] [--task 1]
        [--algo iql] [--steps 150000] [--eval-every 15000] [--eval-episodes 20] [--out reports/learning_check.md]

Generates the dataset if it is missing (`bench data make DATASET`), trains through
`bench run` on the CPU, and writes reports/learning_check.md from the run's curve.csv and result.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="pointmaze-medium-navigate-v0")
    ap.add_argument("--task", type=int, default=1)
    ap.add_argument("--algo", default="iql", help="a registered trainer, at its maze preset")
    ap.add_argument("--steps", type=int, default=150_000)
    ap.add_argument("--eval-every", type=int, default=15_000)
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="reports/learning_check.md")
    args = ap.parse_args()
    bench = [sys.executable, "-m", "bench.cli"]
    subprocess.run(bench + ["data", "make", args.dataset], check=True)
    cmd = bench + ["run", "--dataset", args.dataset, "--task", str(args.task), "--algo", args.algo,
                   "--steps", str(args.steps), "--eval-every", str(args.eval_every),
                   "--eval-episodes", str(args.eval_episodes), "--seed", str(args.seed), "--device", "cpu:0"]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    run_dir = Path(res.stdout.strip().splitlines()[-1].split("run: ", 1)[1].strip())
    result = json.loads((run_dir / "result.json").read_text())
    with open(run_dir / "curve.csv") as f:
        curve = list(csv.DictReader(f))
    shown = " ".join(c for c in cmd[3:])
    algo = result["config"]["algo"]
    settings = ", ".join(f"{k} {v}" for k, v in sorted(algo["config"].items()) if k not in ("preset", "compile_graph"))
    recipe = (result.get("data_recipe") or {}).get("config", {})
    size = f"{recipe['episodes']} x {recipe['episode_steps']} steps" if "episodes" in recipe else "OGBench's size"
    lines = [
        f"# Learning check: {algo['name']} on {args.dataset}, singletask task {args.task} (CPU)",
        "",
        f"Produced by `.venv/bin/python benchmarks/learning_check.py --dataset {args.dataset} --task {args.task} "
        f"--algo {args.algo} --steps {args.steps} --eval-every {args.eval_every} --eval-episodes {args.eval_episodes} --out {args.out}` "
        f"on {time.strftime('%Y-%m-%d')}, which runs "
        f"`bench {shown}`.",
        "",
        f"Dataset: OGBench's {args.dataset} protocol at full size ({size}) generated here with "
        f"seed 0; {algo['name']} with the {algo['config'].get('preset')} preset ({settings}); device {result['device_name']}; commit {result['git']['commit']}"
        f"{' (dirty tree)' if result['git']['dirty'] else ''}.",
        "",
        "| gradient steps | success rate (%) | mean return | wall time (s) |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {int(c['step']):,} | {float(c['score']):.1f} | {float(c['return']):.1f} | {float(c['wall_s']):.0f} |"
              for c in curve]
    lines += [
        "",
        f"Final success rate {result['score']:.1f}%; mean of the last three evaluations "
        f"{result['score_last3_mean']:.1f}% ({args.eval_episodes} episodes each, seeded). "
        f"{result['grad_steps_per_s']:.0f} gradient steps/s; whole run {time.time() - t0:.0f} s.",
        "",
        f"For scale: OGBench's protocol trains 1M steps and evaluates 50 episodes per task; this run took "
        f"{(time.time() - t0) / 60:.0f} minutes on this CPU.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
