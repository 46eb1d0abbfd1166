"""TATU measured: ensemble and VAE training time, rollouts/s, truncation per step, and whether its uncertainty u
predicts the true dynamics violation (issue 15).

    .venv/bin/python benchmarks/tatu_table.py [--dataset pointmaze-medium-stitch-v0] [--preset paper]
        [--aug-config JSON] [--device cpu:0] [--out reports/tatu.md]
    .venv/bin/python benchmarks/tatu_table.py --dataset hopper-random [--hopper-episodes 1500] --out reports/tatu-hopper.md

`--dataset hopper-random` records the Hopper-v5 dataset of the DVR table (benchmarks/dvr_table.py: random actions
scaled by 0.5, Minari's DataCollector) into a temporary Minari directory and uses it; there TATU's rollouts end at
Hopper's termination rule (the `terminations: env` option) and the DVR also checks the reward.

For the dataset: fit TATU (timing the ensemble and the VAE apart), generate its rollouts (timed), then check every
generated transition against the true simulator (bench.dvr) and recompute u(s, a) with the fitted ensemble for
each: the Spearman rank correlation of u with the true error, the DVR per decile of u, and a plot of both.
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


def _shown(path: Path) -> str:
    """The output path as the command line would name it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="pointmaze-medium-stitch-v0")
    ap.add_argument("--task", type=int, default=None)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--aug-config", default="{}")
    ap.add_argument("--device", default="cpu:0")
    ap.add_argument("--hopper-episodes", type=int, default=1500)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "tatu.md")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from scipy.stats import spearmanr

    from bench import data, dvr
    from blocks.dynamics import EnsembleConfig, GaussianEnsemble
    from methods import AUGMENTERS

    device = "cpu" if args.device.startswith("cpu") else args.device
    t0 = time.time()
    name = args.dataset
    if name == "hopper-random":
        import tempfile

        from benchmarks.dvr_table import make_hopper

        os.environ.setdefault("MINARI_DATASETS_PATH", tempfile.mkdtemp(prefix="augbench-minari-"))
        name = make_hopper(args.hopper_episodes)
    data.ensure(name, say=print)
    ds = data.load(name, args.task)
    cls = AUGMENTERS.get("tatu")
    cfg = cls.resolve_config({"preset": args.preset, **json.loads(args.aug_config)})
    paper = cls.resolve_config({"preset": "paper"}).to_dict()
    reduced = {k: (v, paper[k]) for k, v in cfg.to_dict().items() if v != paper[k]}
    aug = cls(cfg, seed=0, device=device)
    aug.data = ds
    obs, act = np.asarray(ds.observations), np.asarray(ds.actions)
    gen = torch.Generator(device=torch.device(device)).manual_seed(0)
    ecfg = EnsembleConfig(members=cfg.members, elites=cfg.elites, hidden=(cfg.ensemble_width,) * cfg.ensemble_layers,
                          max_epochs=cfg.ensemble_epochs, normalize_inputs=cfg.ensemble_normalize_inputs,
                          holdout_leak=cfg.holdout_leak)
    aug.ensemble = GaussianEnsemble(obs.shape[1], act.shape[1], ecfg)
    t = time.perf_counter()
    stats = aug.ensemble.fit(obs, act, ds.next_observations, ds.rewards, generator=gen, device=device)
    ens_s = time.perf_counter() - t
    t = time.perf_counter()
    aug.vae = aug._train_vae(obs, act, gen, lambda i: None)
    vae_s = time.perf_counter() - t
    t = time.perf_counter()
    aug.max_disc = float(aug.ensemble.disagreement(obs, act).max())
    disc_s = time.perf_counter() - t
    aug.begin_sampling(0)
    t = time.perf_counter()
    out = aug.generate()
    gen_s = time.perf_counter() - t
    counts = np.asarray(out.meta.extra["tatu"]["kept_length_counts"])
    rollouts = int(counts.sum())
    rows: dict = {}
    fig = dvr.simulator_dvr(ds, out, per_row=rows)
    u = aug.ensemble.disagreement(out.observations, out.actions).cpu().numpy()
    keep = ~rows["unrecoverable"] & np.isfinite(rows["error"])
    rho = float(spearmanr(u[keep], rows["error"][keep]).statistic)
    viol = (rows["error"] > dvr.DEFAULT_TOLERANCE) | rows["invalid"]
    edges = np.quantile(u[keep], np.linspace(0, 1, 11))
    decile = np.clip(np.searchsorted(edges, u[keep], side="right") - 1, 0, 9)
    by_decile = [float(viol[keep][decile == k].mean()) if (decile == k).any() else float("nan") for k in range(10)]
    pic = args.out.with_name(args.out.stem + "-u-vs-error.png")
    f, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    sub = np.random.default_rng(0).choice(np.flatnonzero(keep), min(20000, keep.sum()), replace=False)
    axes[0].loglog(u[sub], np.maximum(rows["error"][sub], 1e-7), ",", alpha=0.5)
    axes[0].axhline(dvr.DEFAULT_TOLERANCE, color="grey", linestyle=":")
    axes[0].set_xlabel("TATU uncertainty u(s, a)")
    axes[0].set_ylabel("true error (std of state change)")
    axes[0].set_title(f"Spearman rho = {rho:.2f}", fontsize=9)
    axes[1].bar(range(10), np.asarray(by_decile) * 100)
    axes[1].set_xlabel("decile of u")
    axes[1].set_ylabel("true DVR (%)")
    f.tight_layout()
    f.savefig(pic, dpi=120)
    plt.close(f)
    term = int(np.asarray(out.terminals).sum())
    extra = []
    if fig.get("reward_mae") is not None:
        extra.append(f"| reward error vs the simulator (mean abs., stored r - lambda u) | {fig['reward_mae']:.4g} |")
    if fig.get("unrecoverable"):
        extra.append(f"| rows left out as unrecoverable (velocities at the observation's clip) | "
                     f"{fig['unrecoverable']:,} |")
    extra.append(f"| rollouts ended by the environment's termination rule | {term:,} "
                 f"({out.meta.extra['tatu']['terminations']}) |")
    if reduced:
        sizes = "; ".join(f"{k} {v} (paper: {p})" for k, (v, p) in reduced.items())
        budget = f"REDUCED from the paper preset, said here: {sizes}; everything else as the paper preset."
    else:
        budget = "The paper preset throughout (the authors' sizes and budgets)."
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    trunc = " | ".join(f"{100 * c / rollouts:.1f}" for c in counts)
    text = "\n".join([
        f"# TATU on {ds.meta.name}: speed, truncation, and whether u predicts the true violation", "",
        f"Command: `.venv/bin/python benchmarks/tatu_table.py --dataset {args.dataset}"
        + (f" --task {args.task}" if args.task else "")
        + (f" --hopper-episodes {args.hopper_episodes}" if args.dataset == "hopper-random" else "") + f" --preset {args.preset} --aug-config "
        f"'{args.aug_config}' --device {args.device} --out {_shown(args.out)}`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, device {device}; commit {commit}; "
        f"{time.time() - t0:.0f} s in all. Data: {ds.meta.name}, {len(ds):,} rows, {ds.n_episodes:,} episodes. Config: {json.dumps(cfg.to_dict())}", "",
        "| measurement | value |", "|---|---|",
        f"| ensemble fit ({cfg.members} members, {stats['epochs']} epochs of at most {cfg.ensemble_epochs}, "
        f"{len(ds):,} rows) | {ens_s:.1f} s |",
        f"| VAE fit ({cfg.vae_iterations:,} iterations) | {vae_s:.1f} s |",
        f"| max_disc over the data | {aug.max_disc:.4g} ({disc_s:.1f} s) |",
        f"| rollouts generated | {rollouts:,} in {gen_s:.1f} s = {rollouts / gen_s:,.0f} rollouts/s |",
        f"| transitions kept | {len(out):,} |",
        f"| true DVR of the kept transitions | {100 * fig['dvr']:.2f} % ({fig['invalid_states']:,} invalid states) |",
        f"| segments with a violation | {100 * fig['segments']['violating_share']:.1f} % |",
        f"| Spearman rank correlation of u with the true error | {rho:.3f} |", *extra, "", budget, "",
        "Share of rollouts by kept length (0 = truncated at the first step ... H = never truncated; a rollout ended "
        "by the termination rule counts at its length), %:", "",
        "| " + " | ".join(str(k) for k in range(len(counts))) + " |", "|" + "---|" * len(counts), f"| {trunc} |", "",
        "True DVR (%) by decile of u (low to high): " + ", ".join(f"{100 * v:.1f}" for v in by_decile), "",
        f"![u against the true error]({pic.name})", ""])
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
