"""Trains ASTRO's temporal distance representation (methods/astro/tdr.py, GAS's recipe) on a point-maze dataset
and plots TDR distance against the true shortest-path (BFS) distance for random state pairs, beside Euclidean
distance against BFS for contrast; it also prints the wall check of tests/test_astro_tdr.py (median TDR / Euclidean
ratio of state pairs 6 to 8 units apart whose BFS cell distance exceeds their Manhattan cell distance by >= 4,
against pairs where the two are equal).

    AUGBENCH_CACHE=/tmp/tdrcache .venv/bin/python benchmarks/tdr_plot.py          # toy-maze task 1
    .venv/bin/python benchmarks/tdr_plot.py --dataset pointmaze-medium-stitch-v0 --steps 200000 --device cuda

BFS distance: 4-neighbour BFS over the maze cells (`bench.data.pointmaze.bfs_distances`) between the cells
(`env.xy_to_ij` of the first two observation values) of the two states, in cells.  Spearman's rho (rank-based,
ties averaged) is printed for TDR and for Euclidean distance, and written in the panel titles.  The default config
is GAS's except for the values below (--hidden, --batch-size, --steps, --lr, --tau, --expectile): the test's reduced
config (GAS: 512-512-512, batch 1024, 1M steps, lr 3e-4, tau 0.005, expectile 0.999), so that a CPU run takes
minutes; every value used is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The CPU default: the reduced config of tests/test_astro_tdr.py with more steps (see reports/astro-tdr.md).
DEFAULTS = {"hidden": "128,128", "batch_size": 128, "steps": 20000, "lr": 3e-3, "tau": 0.05, "expectile": 0.9}


def cells_of(env, obs: np.ndarray) -> np.ndarray:
    return np.array([env.xy_to_ij(xy) for xy in obs[:, :2]], dtype=np.int64)


def bfs_matrix(maze_map: np.ndarray, cells: np.ndarray) -> dict:
    from bench.data.pointmaze import bfs_distances

    return {c: bfs_distances(maze_map, c)[0] for c in {tuple(c) for c in cells}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="toy-maze")
    p.add_argument("--task", type=int, default=1)
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--hidden", default=DEFAULTS["hidden"], help="comma-separated hidden widths")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--tau", type=float, default=DEFAULTS["tau"])
    p.add_argument("--expectile", type=float, default=DEFAULTS["expectile"])
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--out", default="reports/astro-tdr.png")
    args = p.parse_args(argv)

    import torch
    from scipy.stats import spearmanr

    import gymnasium
    import ogbench.locomaze  # noqa: F401  (registers the maze envs)
    from bench import data
    from methods.astro.tdr import TDR, TDRConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    data.ensure(args.dataset, say=print)
    ds = data.load(args.dataset, args.task)
    env = gymnasium.make(ds.meta.simulator.env_id, **ds.meta.simulator.env_kwargs).unwrapped
    maze_map = np.asarray(env.maze_map)

    cfg = TDRConfig(hidden=tuple(int(h) for h in args.hidden.split(",")), batch_size=args.batch_size,
                    steps=args.steps, lr=args.lr, tau=args.tau, expectile=args.expectile,
                    log_every=max(1, args.steps // 10))
    print(f"dataset {ds.meta.name} task {args.task}: {len(ds)} rows, {ds.n_episodes} episodes; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("config", json.dumps(asdict(cfg)))
    tdr = TDR(cfg)
    t0 = time.time()
    info = tdr.fit(ds, torch.Generator().manual_seed(args.seed), device=args.device,
                   progress=lambda d: print(f"  step {d['step']:>8}  loss {d['loss']:.4f}  V mean {d['v_mean']:.2f}  "
                                            f"adv>=0 {d['accept']:.3f}  {d['seconds']:.0f} s", flush=True))
    fit_s = time.time() - t0

    rng = np.random.default_rng(args.seed)
    obs = np.asarray(ds.observations, np.float32)
    a, b = rng.integers(len(ds), size=args.pairs), rng.integers(len(ds), size=args.pairs)
    cells = cells_of(env, obs)
    dist = bfs_matrix(maze_map, cells)
    bfs = np.array([dist[tuple(cells[i])][tuple(cells[j])] for i, j in zip(a, b)], dtype=np.float64)
    td = tdr.distance(obs[a], obs[b]).cpu().numpy()
    eu = np.linalg.norm(obs[a, :2] - obs[b, :2], axis=1)
    rho_td, rho_eu = float(spearmanr(td, bfs)[0]), float(spearmanr(eu, bfs)[0])
    print(f"fit {fit_s:.0f} s ({info['steps']} steps); {args.pairs} random pairs: "
          f"Spearman rho(TDR, BFS) = {rho_td:.3f}, rho(Euclidean, BFS) = {rho_eu:.3f}")

    wa, wb = rng.integers(len(ds), size=200_000), rng.integers(len(ds), size=200_000)
    we = np.linalg.norm(obs[wa, :2] - obs[wb, :2], axis=1)
    band = (we > 6) & (we < 8)
    wa, wb, we = wa[band], wb[band], we[band]
    geo = np.array([dist[tuple(cells[i])][tuple(cells[j])] for i, j in zip(wa, wb)])
    manhattan = np.abs(cells[wa] - cells[wb]).sum(1)
    wall, open_ = geo >= manhattan + 4, geo == manhattan
    ratio = tdr.distance(obs[wa], obs[wb]).cpu().numpy() / we
    wall_ratio = float(np.median(ratio[wall])) if wall.any() else float("nan")
    open_ratio = float(np.median(ratio[open_])) if open_.any() else float("nan")
    print(f"wall check (Euclidean 6-8): {int(wall.sum())} wall pairs, median TDR/Euclidean {wall_ratio:.2f}; "
          f"{int(open_.sum())} open pairs, {open_ratio:.2f}; wall / open = {wall_ratio / open_ratio:.2f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jitter = rng.uniform(-0.25, 0.25, size=len(bfs))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, y, name, rho in ((axes[0], td, "TDR distance ||phi(s) - phi(g)||", rho_td),
                             (axes[1], eu, "Euclidean distance (xy)", rho_eu)):
        ax.scatter(bfs + jitter, y, s=4, alpha=0.35)
        ax.set_xlabel("BFS distance (maze cells; jittered +-0.25)")
        ax.set_ylabel(name)
        ax.set_title(f"{name.split(' ')[0]} vs BFS: Spearman rho = {rho:.3f}")
    fig.suptitle(f"{ds.meta.name} task {args.task}: {args.pairs} random state pairs; TDR {cfg.hidden} "
                 f"x{cfg.heads}, {cfg.steps} steps, batch {cfg.batch_size}", fontsize=10)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    print(json.dumps({"rho_tdr": rho_td, "rho_euclidean": rho_eu, "wall_ratio": wall_ratio, "open_ratio": open_ratio,
                      "fit_seconds": fit_s, "rows": len(ds),
                      "cache": os.environ.get("AUGBENCH_CACHE")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
