"""ASTRO measured (issue 17): the true DVR of ASTRO against DiffStitch and ASTRO's ablations (no feedback,
Euclidean targets, random targets, inverse-dynamics actions), acceptance and every rejection reason, stitches per
second, the dynamics model's rollout error at 5 / 10 / 15 steps against the simulator, the maze's coverage
before and after augmentation (share of free cells visited, heatmaps), and pictures of the stitches.

    .venv/bin/python benchmarks/astro_table.py [--dataset pointmaze-medium-stitch-v0] [--task 1]
        [--preset cpu-small] [--iterations 30] [--device cpu:0] [--out reports/astro.md] [--no-diffstitch]

Fits ASTRO (and DiffStitch, at its preset of the same name) once through the harness's fit cache
(`bench.augment`: a rerun reuses the fits), then for each variant runs `--iterations` stitch batches from the same
sample seed, keeping EVERY stitch that found a target with its reason; every step of every stitch is checked
against the true simulator (bench.dvr: an error above a tenth of a typical step, or an invalid state, violates).
The ablations are sampling options of one fitted ASTRO, so they differ only in what they name.
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

PASSING = {"plans": 8, "join": "reached", "reach_tol": 3.0}  # harness options; `astro-ensemble` in the studies
PAPER = "ASTRO's paper (summary; its DVR definition is not public): ASTRO 7.7 % against 21.1 % for the best prior method"


def run_variant(aug, iterations: int, keys: tuple) -> tuple[dict, dict]:
    """`iterations` stitch batches: the concatenated stitches that found a target, and counts and timing."""
    parts, counts, t0 = [], {"attempts": 0, "no_target": 0}, time.perf_counter()
    for _ in range(iterations):
        b = aug.stitch_batch()
        counts["attempts"] += b["sources"]
        counts["no_target"] += b["no_target"]
        if b["n"]:
            parts.append({k: (b[k] if isinstance(b[k], np.ndarray) else b[k].cpu().numpy()) for k in keys if k in b})
    counts["seconds"] = time.perf_counter() - t0
    return ({k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}), counts


def judge(ds, aug, b: dict, reasons: tuple) -> dict:
    """True DVR of the stitches (all that found a target, and the accepted), per step and per stitch."""
    from bench import dvr
    from methods.diffstitch import assemble_stitches

    if not b:
        return {"n": 0}
    k = b["k"].astype(int)
    every = assemble_stitches(aug, ds, b, "bridge")
    rows: dict = {}
    fig = dvr.simulator_dvr(ds, every, per_row=rows)
    viol = (rows["error"] > dvr.DEFAULT_TOLERANCE) | rows["invalid"]
    seg = np.repeat(np.arange(len(k)), k)
    stitch_viol = np.bincount(seg, weights=viol, minlength=len(k)) > 0
    acc = b["reason"] == -1
    out = {"n": len(k), "accepted": int(acc.sum()), "steps": int(k.sum()), "steps_accepted": int(k[acc].sum()),
           "dvr_all": 100 * viol.mean(), "stitch_dvr_all": 100 * stitch_viol.mean(),
           "dvr_accepted": 100 * viol[acc[seg]].mean() if acc.any() else float("nan"),
           "stitch_dvr_accepted": 100 * stitch_viol[acc].mean() if acc.any() else float("nan"),
           "gta": fig["gta_dynamic_mse"], "k_mean": float(k.mean()),
           "reasons": {r: int((b["reason"] == i).sum()) for i, r in enumerate(reasons) if i > 0},
           "last_step_dvr": 100 * viol[np.cumsum(k) - 1].mean()}
    if "reach" in b:
        out["reach"] = float(np.median(b["reach"]))
    return out


def model_dvr_on_data(ds, dynamics, lengths=(1, 5, 15, 40), n: int = 512, seed: int = 0) -> dict:
    """Per-step true DVR of the dynamics model's own rollouts of REAL action sequences from real states: each
    step (s^_j, a_j, s^_j+1) of an L-step rollout checked by the simulator.  Separates the model's per-step
    consistency from the planner's actions."""
    import torch

    from bench import dvr
    from bench.dataset import generated_transitions

    off = np.asarray(ds.episode_offsets)
    left = np.repeat(off[1:], np.diff(off)) - np.arange(len(ds))
    lengths = [L for L in lengths if L <= dynamics.cfg.horizon]
    rows = np.random.default_rng(seed).choice(np.flatnonzero(left >= max(lengths)), n, replace=False)
    obs, act = np.asarray(ds.observations), np.asarray(ds.actions)
    out = {}
    for L in lengths:
        a = act[rows[:, None] + np.arange(L)]
        s = dynamics.rollout(torch.as_tensor(obs[rows]), torch.as_tensor(a), torch.Generator().manual_seed(seed))
        s = s.cpu().numpy()
        prev = np.concatenate([obs[rows][:, None], s[:, :-1]], 1)
        g = generated_transitions(ds, "model-check", {}, np.repeat(rows, L), prev.reshape(-1, obs.shape[1]),
                                  s.reshape(-1, obs.shape[1]), actions=a.reshape(-1, act.shape[1]))
        f = dvr.simulator_dvr(ds, g)
        out[L] = (100 * f["dvr"], f["error_quantiles"]["50"], f["error_quantiles"]["90"])
    return out


def coverage(ds, generated_xy: list[np.ndarray], maze, bins_per_cell: int = 4) -> dict:
    """Shares of the maze's free cells (and of 1/`bins_per_cell` sub-cells) visited by the original data, and by
    the original plus each generated set of positions."""
    m = np.asarray(maze.maze_map)
    unit = maze._maze_unit
    fine = np.kron(m == 0, np.ones((bins_per_cell, bins_per_cell), bool))

    def visited(xy):
        # xy -> (i, j) as the env's xy_to_ij (cell centres at ij_to_xy), at the fine resolution
        j = np.floor((xy[:, 0] + maze._offset_x + 0.5 * unit) / unit * bins_per_cell).astype(int)
        i = np.floor((xy[:, 1] + maze._offset_y + 0.5 * unit) / unit * bins_per_cell).astype(int)
        ok = (i >= 0) & (i < fine.shape[0]) & (j >= 0) & (j < fine.shape[1])
        grid = np.zeros_like(fine)
        grid[i[ok], j[ok]] = True
        return grid & fine

    base = visited(np.asarray(ds.observations)[:, :2])
    coarse = lambda g: g.reshape(m.shape[0], bins_per_cell, m.shape[1], bins_per_cell).any((1, 3))  # noqa: E731
    out = {"free_cells": int((m == 0).sum()), "free_bins": int(fine.sum()),
           "original": (int(coarse(base).sum()), int(base.sum()))}
    for i, xy in enumerate(generated_xy):
        g = base | visited(xy) if len(xy) else base
        out[i] = (int(coarse(g).sum()), int(g.sum()), int((visited(xy) & ~base).sum()) if len(xy) else 0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="pointmaze-medium-stitch-v0")
    ap.add_argument("--task", type=int, default=1)
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--aug-config", default="{}")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu:0")
    ap.add_argument("--no-diffstitch", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "astro.md")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import gymnasium
    import matplotlib.pyplot as plt
    import torch

    import ogbench.locomaze  # noqa: F401
    from bench import data, dvr
    from bench.augment import _fitted, log_progress
    from methods import AUGMENTERS
    from methods.astro.astro import REASONS as A_REASONS
    from methods.astro.dynamics import rollout_error
    from methods.diffstitch import REASONS as D_REASONS

    device = "cpu" if args.device.startswith("cpu") else args.device
    out = args.out.resolve()
    cmd = (f".venv/bin/python benchmarks/astro_table.py --dataset {args.dataset} --task {args.task} --preset "
           f"{args.preset}" + (f" --aug-config '{args.aug_config}'" if json.loads(args.aug_config) else "")
           + f" --iterations {args.iterations} --seed {args.seed} --device {args.device}"
           + (" --no-diffstitch" if args.no_diffstitch else "")
           + f" --out {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    t_all = time.time()
    data.ensure(args.dataset, say=print)
    ds = data.load(args.dataset, args.task)
    maze = gymnasium.make(ds.meta.simulator.env_id, **ds.meta.simulator.env_kwargs).unwrapped
    A = AUGMENTERS.get("astro")
    base_cfg = {"preset": args.preset, **json.loads(args.aug_config)}
    t0 = time.perf_counter()
    astro = _fitted(ds, A, "astro", A.resolve_config(base_cfg), args.seed, device, log_progress("astro"))
    fit_s = time.perf_counter() - t0
    print(f"astro fit {fit_s:.0f} s", flush=True)
    roll = rollout_error(astro.dynamics, ds, dvr.simulator_for(ds), horizons=[h for h in (5, 10, 15) if h <= astro.config.horizon], n=1024,
                         generator=torch.Generator().manual_seed(args.seed))
    per_step = model_dvr_on_data(ds, astro.dynamics, seed=args.seed)

    step = float(np.median(np.linalg.norm(np.asarray(ds.next_observations)[:, :2] - np.asarray(ds.observations)[:, :2],
                                          axis=1)))
    variants = [
        ("ASTRO", {}),
        ("ASTRO, feedback off", {"feedback": "off"}),
        (f"ASTRO, Euclidean targets ({10 * step:.2f}-{40 * step:.2f} units)",
         {"target_metric": "euclidean", "d_min": 10 * step, "d_max": 40 * step}),
        ("ASTRO, random targets", {"target_metric": "random"}),
        ("ASTRO, inverse-dynamics actions", {"actions": "inverse"}),
        # harness options, not ASTRO's: the best of 8 plans per pair; the stitch ends at the model's own last
        # state (no jump onto the target) within 3 typical steps of the target
        ("ASTRO, best of 8 plans", {"plans": 8}),
        ("ASTRO, join at the reached state (reach_tol 3)", {"join": "reached", "reach_tol": 3.0}),
        ("ASTRO, best of 8, join reached (reach_tol 3)", PASSING),
        # gradient guidance through the dynamics model's rollout on top of the conditioning feedback
        ("ASTRO, feedback both (condition + guidance)", {"feedback": "both"}),
        # the target ablations again in the variant that passes qualification at CPU sizes (with the ensemble)
        ("ASTRO, Euclidean targets, best of 8, join reached",
         {"target_metric": "euclidean", "d_min": 10 * step, "d_max": 40 * step, **PASSING}),
        ("ASTRO, random targets, best of 8, join reached", {"target_metric": "random", **PASSING}),
    ]
    keys = ("states", "actions", "rewards", "terminals", "k", "source_episode", "source_step", "target_episode",
            "target_step", "reason", "reach")
    results = []
    for label, extra in variants:
        aug = A(A.resolve_config({**base_cfg, **extra}), seed=args.seed, device=device)
        aug.load_fitted(ds, astro.fitted_state())
        aug.begin_sampling(args.seed)
        aug._prepare()
        b, counts = run_variant(aug, args.iterations, keys)
        results.append((label, judge(ds, aug, b, A_REASONS), counts, b))
        print(label, {k: v for k, v in results[-1][1].items() if k != "reasons"}, flush=True)
    if not args.no_diffstitch:
        D = AUGMENTERS.get("diffstitch")
        t0 = time.perf_counter()
        dcfg = D.resolve_config({"preset": args.preset})
        dstitch = _fitted(ds, D, "diffstitch", dcfg, args.seed, device, log_progress("diffstitch"))
        print(f"diffstitch fit {time.perf_counter() - t0:.0f} s", flush=True)
        dstitch.begin_sampling(args.seed)
        dstitch._pools()
        b, counts = run_variant(dstitch, args.iterations, keys[:-1])
        results.append(("DiffStitch", judge(ds, dstitch, b, D_REASONS), counts, b))
        print("DiffStitch", results[-1][1], flush=True)

    # coverage and heatmaps: the original data, and the original plus each variant's ACCEPTED stitches
    def stitch_xy(b, accepted_only=True):
        if not b:
            return np.zeros((0, 2))
        sel = (b["reason"] == -1) if accepted_only else np.ones(len(b["k"]), bool)
        pts = [b["states"][i, 1:b["k"][i] + 1, :2] for i in np.flatnonzero(sel)]
        return np.concatenate(pts) if pts else np.zeros((0, 2))

    cov = coverage(ds, [stitch_xy(r[3]) for r in results], maze)
    cov_all = coverage(ds, [stitch_xy(r[3], False) for r in results], maze)

    unit, m = maze._maze_unit, np.asarray(maze.maze_map)
    extent = (-maze._offset_x - unit / 2, (m.shape[1] - 0.5) * unit - maze._offset_x,
              -maze._offset_y - unit / 2, (m.shape[0] - 0.5) * unit - maze._offset_y)

    def walls(ax, colour):
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j] == 1:
                    x, y = maze.ij_to_xy((i, j))
                    ax.add_patch(plt.Rectangle((x - unit / 2, y - unit / 2), unit, unit, color=colour, lw=0))
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])

    # the ASTRO variant that adds the most data (the one a training study would use), ASTRO as published, and
    # DiffStitch: the augmented data (accepted stitches) beside the original data, then every stitch generated
    astro_rows = [r for r in results if r[0] != "DiffStitch"]
    best = max(astro_rows, key=lambda r: (r[1].get("accepted", 0), r is results[0]))
    dstitch_row = [r for r in results if r[0] == "DiffStitch"]
    show = [("original data", np.asarray(ds.observations)[:, :2])] + \
        [(r[0] + " (accepted)", stitch_xy(r[3])) for r in [best] + dstitch_row] + \
        [(r[0] + " (all stitches)", stitch_xy(r[3], False)) for r in [results[0]] + dstitch_row]
    cols = 3
    rows_n = -(-len(show) // cols)
    f, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 4.2 * rows_n), squeeze=False)
    for ax in axes.flat[len(show):]:
        ax.axis("off")
    for ax, (title, xy) in zip(axes.flat, show):
        h, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=(m.shape[1] * 8, m.shape[0] * 8),
                                   range=((extent[0], extent[1]), (extent[2], extent[3])))
        ax.imshow(np.log1p(h.T), origin="lower", extent=(xe[0], xe[-1], ye[0], ye[-1]), cmap="magma")
        walls(ax, "0.6")
        ax.set_title(f"{title}: {len(xy):,} states (log density)", fontsize=9)
    heat = args.out.with_name(args.out.stem + "-coverage.png")
    f.savefig(heat, dpi=120, bbox_inches="tight")
    plt.close(f)

    panels = [results[0]] + ([best] if best not in (results[0], results[1]) else []) + dstitch_row + [results[1]]
    f, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6))
    rng = np.random.default_rng(0)
    for ax, (label, _, _, b) in zip(np.atleast_1d(axes), panels):
        walls(ax, "0.25")
        if b:
            acc = b["reason"] == -1
            for mask, colour, name in [(~acc, "#d62728", "rejected"), (acc, "#2ca02c", "accepted")]:
                idx = np.flatnonzero(mask)
                for j, s in enumerate(rng.choice(idx, min(30, len(idx)), replace=False) if len(idx) else []):
                    xy = b["states"][s, :b["k"][s] + 1, :2]
                    ax.plot(xy[:, 0], xy[:, 1], color=colour, lw=1.1, alpha=0.8, label=name if j == 0 else None)
                    ax.plot(xy[0, 0], xy[0, 1], "o", color=colour, ms=2.5)
                    ax.plot(xy[-1, 0], xy[-1, 1], "s", color=colour, ms=2.5)
        ax.set_title(f"{label}: stitches (o source, s target)", fontsize=9)
        ax.legend(loc="lower left", fontsize=7, frameon=False)
    pic = args.out.with_name(args.out.stem + "-stitches.png")
    f.savefig(pic, dpi=120, bbox_inches="tight")
    plt.close(f)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    c = astro.config
    lines = [
        f"# ASTRO on {ds.meta.name} (task {args.task}): true DVR against DiffStitch and the ablations, acceptance, "
        "speed, coverage", "",
        f"Command: `{cmd}`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with a background study), device {device}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); commit {commit}; {time.time() - t_all:.0f} s "
        f"in all. Preset `{args.preset}` for both methods (REDUCED sizes, not the papers': ASTRO's TDR 128 x 2 for "
        f"{c.tdr_steps:,} steps, planner and dynamics DiTs of width {c.width} / {c.dyn_width} for {c.train_steps:,} / "
        f"{c.dyn_train_steps:,} steps; DiffStitch's U-Net base 16 for 6,000 steps). ASTRO fit: {fit_s:.0f} s"
        + (" (from the fit cache)" if fit_s < 5 else "") + ".", "",
        f"ASTRO config: {json.dumps(c.to_dict())}", "",
        f"Every variant: {args.iterations} iterations of {c.sources_per_iteration} sources from sample seed "
        f"{args.seed}; DVR = share of steps whose simulator error exceeds {dvr.DEFAULT_TOLERANCE} typical steps "
        "(bench.dvr), over all stitches that found a target and over the accepted ones.", "",
        f"**{PAPER}.** Not comparable one to one: ours is per step against the true simulator, at reduced sizes.", "",
        "| variant | stitches (found a target) | accepted | DVR all steps (%) | DVR accepted steps (%) | stitches with a "
        "violation, all (%) | DVR of the joining step (%) | median reach error (typical steps) | mean length | "
        "stitches/s (accepted/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, j, counts, _ in results:
        if not j["n"]:
            lines.append(f"| {label} | 0 | 0 | - | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {label} | {j['n']:,} / {counts['attempts']:,} | {j['accepted']:,} | {j['dvr_all']:.1f} | "
            f"{j['dvr_accepted']:.1f} | {j['stitch_dvr_all']:.1f} | {j['last_step_dvr']:.1f} | "
            f"{j.get('reach', float('nan')):.2f} | {j['k_mean']:.1f} | {j['n'] / counts['seconds']:.2f} "
            f"({j['accepted'] / counts['seconds']:.2f}) |")
    lines += ["", "Rejections (ASTRO: reach, termination, dynamics, return; DiffStitch: termination, dynamics, "
              "return; no target: none in the window / above the similarity):", "",
              "| variant | no target | " + " | ".join(A_REASONS[1:]) + " |", "|---|" + "---:|" * len(A_REASONS)]
    for label, j, counts, _ in results:
        r = j.get("reasons", {})
        lines.append(f"| {label} | {counts['no_target']:,} | " + " | ".join(f"{r.get(x, 0):,}" if x in r else "-"
                                                                              for x in A_REASONS[1:]) + " |")
    lines += ["", f"## The dynamics model: rollout error against the simulator ({roll['rows']} start rows, the data's "
              "own actions)", "",
              "| steps | model error (typical steps, mean over dims) | model L2 (units) | state held still (typical "
              "steps) | the data's own states (typical steps) |", "|---:|---:|---:|---:|---:|"]
    for h, v in roll["horizons"].items():
        lines.append(f"| {h} | {v['model_scaled']:.3f} | {v['model_l2']:.4f} | {v['static_scaled']:.3f} | "
                     f"{v['data_scaled']:.2g} |")
    lines += ["", "Per-step true DVR of the model's rollouts of the data's own action sequences (512 starts; each step "
              "(s^_j, a_j, s^_j+1) checked by the simulator, as the stitches are):", "",
              "| rollout length | DVR of its steps (%) | error q50 / q90 (typical steps) |", "|---:|---:|---:|"]
    for L, (rate, q50, q90) in per_step.items():
        lines.append(f"| {L} | {rate:.1f} | {q50:.3f} / {q90:.3f} |")
    lines += ["", "## Coverage of the maze", "",
              f"{cov['free_cells']} free maze cells ({cov['free_bins']} free quarter-cell bins). Original data: "
              f"{cov['original'][0]} cells ({100 * cov['original'][0] / cov['free_cells']:.0f} %), "
              f"{cov['original'][1]} bins ({100 * cov['original'][1] / cov['free_bins']:.0f} %).", "",
              "| variant | cells visited with the accepted stitches | bins (new bins) | with every stitch: bins "
              "(new) |", "|---|---:|---:|---:|"]
    for i, (label, *_rest) in enumerate(results):
        lines.append(f"| {label} | {cov[i][0]} ({100 * cov[i][0] / cov['free_cells']:.0f} %) | {cov[i][1]} "
                     f"({cov[i][2]}) | {cov_all[i][1]} ({cov_all[i][2]}) |")
    lines += ["", f"![coverage heatmaps]({heat.name})", "", f"![stitches]({pic.name})", ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
