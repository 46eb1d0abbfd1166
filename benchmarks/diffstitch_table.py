"""DiffStitch measured (issue 16): fit time, stitches per second, acceptance and every rejection reason, the true
DVR of accepted against rejected stitches and per position along the stitch, the precision and recall of the
model's dynamics check against the true simulator (at the configured delta and at others), and a picture.

    .venv/bin/python benchmarks/diffstitch_table.py [--dataset pointmaze-medium-stitch-v0] [--task 1]
        [--preset cpu-small] [--aug-config JSON] [--iterations 40] [--device cpu:0] [--out reports/diffstitch.md]

Fits DiffStitch once (timing the diffusion model and the ensemble apart), runs `--iterations` stitch batches
keeping EVERY stitch that found a target (accepted or not, with its reason and per-step model error), checks each
step of each against the true simulator (bench.dvr), and tabulates.  A stitch "truly violates" when any of its
steps is a dynamics violation (error above bench.dvr's tolerance, or an invalid state); "flagged" when the model's
dynamics check rejects it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _pr(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall of `flagged` against `truth`, and the flagged share."""
    tp = float((flagged & truth).sum())
    precision = tp / flagged.sum() if flagged.any() else float("nan")
    recall = tp / truth.sum() if truth.any() else float("nan")
    return precision, recall, float(flagged.mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="pointmaze-medium-stitch-v0")
    ap.add_argument("--task", type=int, default=1)
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--aug-config", default="{}")
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu:0")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "diffstitch.md")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench import data, dvr
    from bench.data.show import _draw_maze
    from methods import AUGMENTERS
    from methods.diffstitch import REASONS, assemble_stitches

    device = "cpu" if args.device.startswith("cpu") else args.device
    t_all = time.time()
    data.ensure(args.dataset, say=print)
    ds = data.load(args.dataset, args.task)
    cls = AUGMENTERS.get("diffstitch")
    cfg = cls.resolve_config({"preset": args.preset, **json.loads(args.aug_config)})
    aug = cls(cfg, seed=args.seed, device=device)
    marks: list[tuple[int, float]] = []
    aug.on_progress = lambda done, total: marks.append((done, time.perf_counter()))
    t0 = time.perf_counter()
    aug.fit(ds)
    fit_s = time.perf_counter() - t0
    diff_s = next((t for d, t in marks if d >= cfg.train_steps), t0) - t0
    ens_s = fit_s - diff_s
    print(f"fit {fit_s:.0f} s (diffusion {diff_s:.0f} s, ensemble {ens_s:.0f} s)", flush=True)

    # the inverse-dynamics model alone: its actions between REAL consecutive states, checked by the simulator
    import torch

    from bench.dataset import generated_transitions

    rows_real = np.sort(np.random.default_rng(args.seed).permutation(len(ds))[:20_000])
    s_real, s2_real = np.asarray(ds.observations)[rows_real], np.asarray(ds.next_observations)[rows_real]
    a_inv = np.asarray(aug.actions_between(torch.as_tensor(s_real, device=device),
                                           torch.as_tensor(s2_real, device=device)).cpu(), np.float32)
    inv_fig = dvr.simulator_dvr(ds, generated_transitions(ds, "inverse-check", {}, rows_real, s_real, s2_real,
                                                          actions=a_inv))
    true_fig = dvr.simulator_dvr(ds, generated_transitions(ds, "inverse-check", {}, rows_real, s_real, s2_real,
                                                           actions=np.asarray(ds.actions)[rows_real]))
    aug.begin_sampling(args.seed)
    aug._pools()
    keys = ("states", "actions", "rewards", "terminals", "k", "source_episode", "source_step", "target_episode",
            "target_step", "reason", "error")
    parts, no_target, attempts = [], 0, 0
    t0 = time.perf_counter()
    for i in range(args.iterations):
        b = aug.stitch_batch()
        attempts += b["sources"]
        no_target += b["no_target"]
        if b["n"]:
            parts.append({k: (v if isinstance(v, np.ndarray) else v.cpu().numpy()) for k, v in b.items() if k in keys})
        print(f"iteration {i + 1}/{args.iterations}", flush=True)
    stitch_s = time.perf_counter() - t0
    b = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    reason, k = b["reason"], b["k"].astype(int)
    accepted = reason == -1
    n = len(k)
    every = assemble_stitches(aug, ds, b, "bridge")  # every stitch that found a target, as bridge segments, in order
    rows: dict = {}
    fig = dvr.simulator_dvr(ds, every, per_row=rows)
    viol = (rows["error"] > dvr.DEFAULT_TOLERANCE) | rows["invalid"]
    seg = np.repeat(np.arange(n), k)
    pos = np.arange(len(seg)) - np.repeat(np.cumsum(k) - k, k)
    stitch_viol = np.bincount(seg, weights=viol, minlength=n) > 0
    step_err = b["error"]  # (n, H - 1) model error per step (0 past k)
    max_err = step_err.max(1)

    def dvr_of(mask_stitch):
        m = mask_stitch[seg]
        return (100 * viol[m].mean() if m.any() else float("nan"),
                100 * stitch_viol[mask_stitch].mean() if mask_stitch.any() else float("nan"), int(mask_stitch.sum()))

    groups = [("accepted", accepted)] + [(f"rejected: {r}", reason == REASONS.index(r)) for r in REASONS[1:]] + \
        [("all that found a target", np.ones(n, bool))]
    flagged = reason == REASONS.index("dynamics")
    p, r, share = _pr(flagged, stitch_viol)
    alt = []
    err = aug.model_error
    for label, delta in [(f"q{q}", float(np.quantile(err, q))) for q in (0.5, 0.9, 0.99, 0.999)] + \
            [("authors' 0.8", 0.8), ("authors' 1.5", 1.5)]:
        alt.append((label, delta, *_pr(max_err > delta, stitch_viol)))
    # per position along the stitch: absolute step index, and first / middle / last step
    pos_rows = []
    for lo, hi in [(0, 1), (1, 5), (5, 10), (10, 20), (20, 40)]:
        m = (pos >= lo) & (pos < hi)
        if m.any():
            pos_rows.append((f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}", 100 * viol[m].mean(),
                             100 * viol[m & accepted[seg]].mean() if (m & accepted[seg]).any() else float("nan"),
                             int(m.sum())))
    last = pos == k[seg] - 1
    middle = (pos > 0) & ~last
    # the picture: up to 40 accepted and 40 rejected stitches on the maze
    rng = np.random.default_rng(0)
    f = _draw_maze(ds, plt, 60, 0)
    ax = f.axes[0]
    st = b["states"]
    for mask, colour, label in [(~accepted, "#d62728", "rejected"), (accepted, "#2ca02c", "accepted")]:
        idx = np.flatnonzero(mask)
        for j, s in enumerate(rng.choice(idx, min(40, len(idx)), replace=False) if len(idx) else []):
            xy = st[s, :k[s] + 1, :2]
            ax.plot(xy[:, 0], xy[:, 1], color=colour, lw=1.2, alpha=0.8, label=label if j == 0 else None)
            ax.plot(xy[0, 0], xy[0, 1], "o", color=colour, ms=2.5)
            ax.plot(xy[-1, 0], xy[-1, 1], "s", color=colour, ms=2.5)
    ax.legend(loc="lower left", bbox_to_anchor=(1.0, 0.0), fontsize=8, frameon=False)
    ax.set_title(f"DiffStitch ({args.preset}) on {ds.meta.name}: stitches (o source, s target)", fontsize=9)
    pic = args.out.with_name(args.out.stem + "-stitches.png")
    f.savefig(pic, dpi=130, bbox_inches="tight")
    plt.close(f)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    counts = {r: int((reason == REASONS.index(r)).sum()) for r in REASONS[1:]}
    n_acc = int(accepted.sum())
    cmd = (f".venv/bin/python benchmarks/diffstitch_table.py --dataset {args.dataset} --task {args.task} --preset "
           f"{args.preset} --aug-config '{args.aug_config}' --iterations {args.iterations} --device {args.device}")
    lines = [
        f"# DiffStitch on {ds.meta.name} (task {args.task}): acceptance, speed, and whether the model check catches "
        "true violations", "",
        f"Command: `{cmd}`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, device {device}; commit {commit}; "
        f"{time.time() - t_all:.0f} s in all. Preset `{args.preset}` (REDUCED: see below). Config: "
        f"{json.dumps(cfg.to_dict())}", "",
        "| measurement | value |", "|---|---|",
        f"| diffusion + inverse dynamics fit ({cfg.train_steps:,} steps, batch {cfg.batch_size} x "
        f"{cfg.grad_accumulate}) | {diff_s:.0f} s ({cfg.train_steps / max(diff_s, 1e-9):.1f} steps/s) |",
        f"| ensemble fit ({cfg.members} members, {cfg.ensemble_epochs} epochs, {len(ds):,} rows) | {ens_s:.0f} s |",
        f"| pools | {aug.pool_sizes['windows']:,} windows; sources {aug.pool_sizes['sources']:,}, targets "
        f"{aug.pool_sizes['targets']:,} |",
        (f"| delta (q{cfg.delta_quantile} of the model's error on real steps) | {aug.delta:.3g} |"
         if cfg.delta_quantile else f"| delta | {aug.delta:.3g} |"),
        f"| attempts (sources tried) | {attempts:,} in {stitch_s:.0f} s = {attempts / stitch_s:.1f} attempts/s |",
        f"| accepted stitches | {n_acc:,} ({100 * n_acc / attempts:.1f} % of attempts), {int(k[accepted].sum()):,} "
        f"transitions; {n_acc / stitch_s:.2f} stitches/s, {k[accepted].sum() / stitch_s:.1f} transitions/s |",
        f"| rejected: no target above the similarity | {no_target:,} ({100 * no_target / attempts:.1f} %) |",
    ]
    for r_ in REASONS[1:]:
        lines.append(f"| rejected: {r_} | {counts[r_]:,} ({100 * counts[r_] / attempts:.1f} %) |")
    lines += [
        f"| true DVR of every checked step (all {len(every):,}) | {100 * fig['dvr']:.2f} % |",
        f"| true DVR of 20,000 REAL steps with the inverse model's actions (the data's own actions) | "
        f"{100 * inv_fig['dvr']:.2f} % ({100 * true_fig['dvr']:.2f} %) |",
        f"| GTA dynamic MSE (all checked steps) | {fig['gta_dynamic_mse']:.4g} |", "",
        "## True DVR of accepted and rejected stitches", "",
        "| stitches | steps violating (%) | stitches with a violation (%) | stitches |", "|---|---:|---:|---:|"]
    for label, mask in groups:
        a, s_, c = dvr_of(mask)
        lines.append(f"| {label} | {a:.1f} | {s_:.1f} | {c:,} |")
    lines += ["", "## The model's dynamics check against the true simulator (per stitch)", "",
              f"At the configured delta = {aug.delta:.3g}: precision {p:.3f} (flagged stitches that truly violate), "
              f"recall {r:.3f} (truly violating stitches flagged), {100 * share:.1f} % flagged; "
              f"{100 * stitch_viol.mean():.1f} % of the stitches truly violate.", "",
              "The same check at other thresholds (max per-step model error of each stitch above delta):", "",
              "| delta | value | precision | recall | flagged (%) |", "|---|---:|---:|---:|---:|"]
    for label, delta, pp, rr, sh in alt:
        lines.append(f"| {label} | {delta:.3g} | {pp:.3f} | {rr:.3f} | {100 * sh:.1f} |")
    lines += ["", "## True DVR per position along the stitch", "",
              "| step of the stitch | all stitches (%) | accepted (%) | steps |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {v:.1f} | {w:.1f} | {c:,} |" for a, v, w, c in pos_rows]
    lines += [f"| first step | {100 * viol[pos == 0].mean():.1f} | | |",
              f"| middle steps | {100 * viol[middle].mean():.1f} | | |" if middle.any() else "",
              f"| last step (into the target) | {100 * viol[last].mean():.1f} | | |", "",
              f"![accepted and rejected stitches]({pic.name})", ""]
    text = "\n".join(lines)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
