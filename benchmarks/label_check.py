"""Goal labels of a study's augmentations: do the generated rows' rewards and terminal flags agree with where
their states are?  The DVR checks s -> s' only; an OGBench singletask maze labels a row by its own state s
(reward 0 and terminal within the goal radius, -1 elsewhere), so a state moved without relabelling, or a label
generated beside its state, can teach a wrong goal while obeying the dynamics.  Definition: bench.dvr.label_check.

    .venv/bin/python benchmarks/label_check.py [--sweep sweeps/reference-pointmaze-cpu.yaml]
        [--out reports/label_check.md]

Plans the study (`bench sweep FILE --dry-run`'s plan) to find each augmentation's cache key, and checks every
augmentation found in this machine's cache (`~/.cache/augbench/augmented/KEY.npz`, beside its DVR figure); the
others are listed as not checked.  The original data is checked too (its labels agree by construction: a known
answer).  OGBench singletask maze datasets only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", default="sweeps/reference-pointmaze-cpu.yaml")
    ap.add_argument("--out", default="reports/label_check.md")
    args = ap.parse_args()

    from bench import data, dvr
    from bench.augment import cache_path
    from bench.data.ogbench_data import task_goal
    from bench.dataset import load
    from bench.io import write_bytes
    from bench.sweep.plan import augmentation_key, expand

    _, runs = expand(args.sweep)
    augs: dict[tuple, dict] = {}  # (dataset, task, cache key) -> the labels that train on it, its seed
    for r in runs:
        key = augmentation_key(r)
        if key is None:
            continue
        q = r.request
        a = augs.setdefault((q.dataset, q.task, key), {"labels": set(), "seed": q.seed})
        a["labels"].add(r.augmenter_label)
    t0 = time.time()
    lines = [
        f"# Goal labels of generated data: the augmentations of `{args.sweep}`",
        "",
        f"Produced by `.venv/bin/python benchmarks/label_check.py --sweep {args.sweep} --out {args.out}` on "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
    ]
    missing = []
    for dataset, task in sorted({(d, t) for d, t, _ in augs}):
        original = data.load(dataset, task)
        goal, tol = task_goal(original.meta)
        rows = [("original data", "-", dvr.label_check(original, original), None)]
        for (d, t, key), a in sorted(augs.items(), key=lambda kv: (sorted(kv[1]["labels"]), kv[1]["seed"])):
            if (d, t) != (dataset, task):
                continue
            name = ", ".join(sorted(a["labels"]))
            if not cache_path(key).exists():
                missing.append(f"{name} seed {a['seed']}")
                continue
            fig = dvr.dvr_path(key, dvr.DEFAULT_TOLERANCE, "simulator")
            rate = json.loads(fig.read_text())["dvr"] if fig.exists() else None
            rows.append((name, str(a["seed"]), dvr.label_check(original, load(cache_path(key))), rate))
        lines += [
            f"## {dataset}, singletask task {task}",
            "",
            f"A row is at the goal when its state's xy lies within {tol:g} of the task goal "
            f"{np.round(goal, 3).tolist()} (OGBench's singletask rule, on the state s). Its labels are right when "
            "reward = 0 and terminal exactly there, reward = -1 and not terminal elsewhere. *Label errors*: the "
            "share of generated rows whose reward (nearer 0 than -1 or not) or terminal flag disagrees; the reward's "
            "mean absolute error against the true label beside it. *Labelled goal* / *at goal*: the "
            "share labelled as goal (reward 0) / truly at the goal. *Precision*: the share of goal-labelled rows "
            "at the goal; *recall*: the share of rows at the goal labelled as goal. The DVR (dynamics, the cached "
            "figure of the same augmentation) is beside it. In training the generated rows are mixed with the "
            "original data at the study's ratio (50/50 unless synthetic-only), so a batch carries about half "
            "these rates.",
            "",
            "| data | aug. seed | rows | reward label errors % | reward MAE | terminal label errors % | labelled goal % "
            "| at goal % | precision % | recall % | DVR % |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, seed, f, rate in rows:
            lines.append(f"| {name} | {seed} | {f['rows']:,} | {pct(f['reward_label_errors'])} | {f['reward_mae']:.3g} | "
                         f"{pct(f['terminal_label_errors'])} | {pct(f['labelled_goal'])} | {pct(f['at_goal'])} | "
                         f"{pct(f['goal_label_precision'])} | {pct(f['goal_label_recall'])} | "
                         f"{'-' if rate is None else pct(rate)} |")
        lines.append("")
    if missing:
        lines += ["Not in this machine's cache, so not checked: " + "; ".join(missing) + ".", ""]
    lines.append(f"Checking took {time.time() - t0:.0f} s.")
    write_bytes(Path(args.out), ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
