"""What a dataset holds: a summary and a picture (the maze with the trajectories drawn on it)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from bench.dataset import Dataset
from bench.io import write_bytes


def summary(ds: Dataset) -> dict:
    lengths = ds.episode_lengths
    rew = np.asarray(ds.rewards)
    out = {
        "name": ds.meta.name,
        "source": ds.meta.source,
        "kind": ds.meta.kind,
        "task": ds.meta.task,
        "env": ds.meta.simulator.env_id + "".join(f" {k}={v}" for k, v in ds.meta.simulator.env_kwargs.items()),
        "transitions": len(ds),
        "episodes": ds.n_episodes,
        "episode length min/mean/max": f"{lengths.min()} / {lengths.mean():.1f} / {lengths.max()}",
        "terminals": int(np.asarray(ds.terminals).sum()),
        "timeouts": int(np.asarray(ds.timeouts).sum()),
        "reward mean/min/max": f"{rew.mean():.4g} / {rew.min():.4g} / {rew.max():.4g}",
        "content hash": ds.meta.content_hash,
    }
    if ds.meta.task is not None and ds.meta.source == "ogbench":
        # Singletask OGBench data: a terminal marks a goal state (reward 0).
        ep = ds.episode_index
        reached = np.zeros(ds.n_episodes, bool)
        reached[np.unique(ep[np.asarray(ds.terminals)])] = True
        out["goal states (share of steps)"] = f"{np.asarray(ds.terminals).mean():.4f}"
        out["episodes reaching the goal"] = f"{reached.mean():.4f}"
    return out


def ranges(ds: Dataset) -> list[tuple[str, float, float, float, float]]:
    rows = []
    for key in ("observations", "actions"):
        a = np.asarray(getattr(ds, key)).reshape(len(ds), -1)
        for d in range(a.shape[1]):
            col = a[:, d]
            rows.append((f"{key}[{d}]", float(col.min()), float(col.max()), float(col.mean()), float(col.std())))
    return rows


def draw(ds: Dataset, path: Path, max_episodes: int = 300, seed: int = 0) -> Path:
    """PNG of the data: for mazes, walls plus trajectories (and the task's start and goal); otherwise the
    per-dimension histograms of the observations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ds.meta.simulator.kind == "ogbench" and "maze" in (ds.meta.simulator.env_id or ""):
        fig = _draw_maze(ds, plt, max_episodes, seed)
    else:
        fig = _draw_hist(ds, plt)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return Path(path)


def _draw_maze(ds: Dataset, plt, max_episodes: int, seed: int):
    import gymnasium

    import ogbench.locomaze  # noqa: F401

    env = gymnasium.make(ds.meta.simulator.env_id, **ds.meta.simulator.env_kwargs)
    maze = env.unwrapped
    m = np.asarray(maze.maze_map)
    unit = maze._maze_unit
    fig, ax = plt.subplots(figsize=(1.0 * m.shape[1] + 1, 1.0 * m.shape[0]))
    _draw_walls(ax, maze)
    rng = np.random.default_rng(seed)
    eps = np.arange(ds.n_episodes)
    if len(eps) > max_episodes:
        eps = np.sort(rng.choice(eps, max_episodes, replace=False))
    cmap = plt.get_cmap("viridis")
    obs = np.asarray(ds.observations)
    for k, e in enumerate(eps):
        a, b = ds.episode_offsets[e], ds.episode_offsets[e + 1]
        xy = obs[a:b, :2]
        ax.plot(xy[:, 0], xy[:, 1], lw=0.5, alpha=0.35, color=cmap(k / max(1, len(eps) - 1)))
    if ds.meta.task is not None:
        info = maze.task_infos[ds.meta.task - 1]
        sx, sy = maze.ij_to_xy(info["init_ij"])
        gx, gy = maze.ij_to_xy(info["goal_ij"])
        ax.add_patch(plt.Circle((gx, gy), maze._goal_tol, color="#d55e00", alpha=0.5))
        ax.plot([sx], [sy], marker="o", ms=9, color="#0072b2", label=f"task {ds.meta.task} start")
        ax.plot([gx], [gy], marker="*", ms=14, color="#d55e00", label=f"task {ds.meta.task} goal")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    env.close()
    ax.set_xlim(-unit / 2 - 4, (m.shape[1] - 0.5) * unit - 4)
    ax.set_ylim(-unit / 2 - 4, (m.shape[0] - 0.5) * unit - 4)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{ds.meta.name}: {len(eps)} of {ds.n_episodes} episodes, {len(ds):,} transitions", fontsize=9)
    return fig


def draw_points_on_maze(ax, meta, xy: np.ndarray, seed: int = 0, max_points: int = 3000) -> None:
    """The maze of `meta` (walls, the task's start and goal) with a seeded sample of the points `xy` on it."""
    import gymnasium

    import ogbench.locomaze  # noqa: F401

    env = gymnasium.make(meta.simulator.env_id, **meta.simulator.env_kwargs)
    try:
        maze = env.unwrapped
        m = np.asarray(maze.maze_map)
        unit = maze._maze_unit
        _draw_walls(ax, maze)
        if len(xy) > max_points:
            xy = xy[np.sort(np.random.default_rng(seed).choice(len(xy), max_points, replace=False))]
        ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.4, color="#0072b2", lw=0)
        if meta.task is not None:
            info = maze.task_infos[meta.task - 1]
            gx, gy = maze.ij_to_xy(info["goal_ij"])
            sx, sy = maze.ij_to_xy(info["init_ij"])
            ax.plot([sx], [sy], marker="o", ms=7, color="#009e73")
            ax.plot([gx], [gy], marker="*", ms=11, color="#d55e00")
    finally:
        env.close()
    ax.set_xlim(-unit / 2 - 4, (m.shape[1] - 0.5) * unit - 4)
    ax.set_ylim(-unit / 2 - 4, (m.shape[0] - 0.5) * unit - 4)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_walls(ax, maze) -> None:
    """The maze's wall cells as grey squares on `ax`."""
    from matplotlib.patches import Rectangle

    m = np.asarray(maze.maze_map)
    unit = maze._maze_unit
    for i, j in zip(*np.nonzero(m == 1)):
        x, y = maze.ij_to_xy((i, j))
        ax.add_patch(Rectangle((x - unit / 2, y - unit / 2), unit, unit, color="0.25", lw=0))


def _draw_hist(ds: Dataset, plt):
    obs = np.asarray(ds.observations).reshape(len(ds), -1)
    d = min(obs.shape[1], 16)
    cols = min(4, d)
    rows = int(np.ceil(d / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.2 * rows), squeeze=False)
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k < d:
            ax.hist(obs[:, k], bins=50, color="#0072b2")
            ax.set_title(f"obs[{k}]", fontsize=8)
        else:
            ax.axis("off")
    fig.suptitle(f"{ds.meta.name}: {len(ds):,} transitions, {ds.n_episodes} episodes", fontsize=9)
    fig.tight_layout()
    return fig
