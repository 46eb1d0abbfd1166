"""OGBench point-maze datasets generated here, with OGBench's own simulator and its published protocol.

The protocol (OGBench `data_gen_scripts/generate_locomaze.py` with the point-maze flags of `commands.sh`):
- the env is `pointmaze-{maze}-v0` made with `terminate_at_goal=False` and `max_episode_steps` = episode length,
  so every episode runs exactly that many steps and stores one row per step (pre-step observation, action,
  `terminals` = episode over, pre-step qpos/qvel);
- the action is the unit vector towards the env's BFS oracle subgoal, plus N(0, noise^2) per dimension,
  clipped to [-1, 1];
- `navigate`: start uniform over free cells, goal uniform over "vertex" cells (not straight corridor cells);
  each time the goal is reached a new one is drawn and the episode goes on;
- `stitch`: start uniform over free cells, goal uniform over the free cells exactly 4 BFS steps away (the
  start cell if none), then the agent heads there and stays;
- a validation split of `episodes // 10` more episodes goes to `<file>-val.npz`.

All protocol randomness draws on numpy's global generator in the protocol's order (start cell, goal cell,
start/goal position noise inside `reset`, then per step the action noise and, in `navigate`, new goals).
OGBench never seeds it; here it is seeded per episode from (seed, split, episode index), and the env's own
generator (which draws the initial velocity) is seeded through `reset(seed=...)`.  A file is therefore
bit-for-bit reproducible and independent of how many worker processes made it.

Speed: the env's `get_oracle_subgoal` runs a BFS over the whole maze at every step; here the subgoal of every
(goal cell, current cell) pair is precomputed once with the same rule, and a test checks it equals the env's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from bench.errors import BenchError, ConfigError
from bench.io import ensure_dir, file_sha256, save_npz, stage_path, write_json
from bench.paths import cache_dir

MAZES = ("arena", "medium", "large", "giant")
# OGBench's maze class also has an 'arena' map (an open 6 x 6 room, one task: cell (1, 1) to (6, 6)) but registers
# no point-maze env for it: the arena is OGBench's `pointmaze-medium-*` env made with `maze_type='arena'`, the
# same simulator, task code and relabelling (OGBench ships no arena dataset; the toy `toy-arena` is made here).
KINDS = ("navigate", "stitch")
STITCH_CELLS = 4  # goal distance in BFS cells for `stitch` (OGBench's adj_steps)
_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1))  # the env's BFS neighbour order


@dataclass(frozen=True)
class MazeGenConfig:
    """One point-maze dataset.  Defaults are OGBench's pointmaze-medium-stitch-v0."""

    maze: Literal["arena", "medium", "large", "giant"] = "medium"
    kind: Literal["navigate", "stitch"] = "stitch"
    episodes: int = 5000  # training episodes; the val file gets episodes // 10 more
    episode_steps: int = 201  # rows per episode (OGBench's max_episode_steps)
    noise: float = 0.5  # std of the Gaussian action noise (commands.sh uses 0.5 for every point maze)
    seed: int = 0

    def check(self) -> "MazeGenConfig":
        if self.maze not in MAZES:
            raise ConfigError(f"'maze' = '{self.maze}' is not one of {', '.join(MAZES)}", "request", "maze")
        if self.kind not in KINDS:
            raise ConfigError(f"'kind' = '{self.kind}' is not one of {', '.join(KINDS)}", "request", "kind")
        if self.maze == "arena" and self.kind == "navigate":
            raise ConfigError("'kind' = 'navigate' needs vertex cells (corridor ends and junctions); the open arena "
                              "has none: use 'stitch'", "request", "kind")
        if self.episodes < 1:
            raise ConfigError(f"'episodes' must be at least 1, got {self.episodes}", "request", "episodes")
        if self.episode_steps < 2:
            raise ConfigError(f"'episode_steps' must be at least 2, got {self.episode_steps}", "request",
                              "episode_steps")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError(f"'noise' must be a finite number >= 0, got {self.noise}", "request", "noise")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"'seed' must be in [0, 2^32), got {self.seed}", "request", "seed")
        return self

    @property
    def env_id(self) -> str:
        return "pointmaze-medium-v0" if self.maze == "arena" else f"pointmaze-{self.maze}-v0"

    @property
    def env_kwargs(self) -> dict:
        """Keyword arguments every env of this dataset is made with (the arena's map, see MAZES)."""
        return {"maze_type": "arena"} if self.maze == "arena" else {}

    @property
    def ogbench_name(self) -> str:
        """OGBench's dataset name for this maze and kind (the env/loader name, whatever the size; the arena's
        is the medium maze's, made with `env_kwargs`)."""
        return f"pointmaze-{'medium' if self.maze == 'arena' else self.maze}-{self.kind}-v0"

    @property
    def val_episodes(self) -> int:
        return self.episodes // 10


# OGBench's published sizes (data_gen_scripts/commands.sh).
OGBENCH_PRESETS: dict[str, MazeGenConfig] = {
    "pointmaze-medium-navigate-v0": MazeGenConfig("medium", "navigate", 1000, 1001),
    "pointmaze-large-navigate-v0": MazeGenConfig("large", "navigate", 1000, 1001),
    "pointmaze-giant-navigate-v0": MazeGenConfig("giant", "navigate", 500, 2001),
    "pointmaze-medium-stitch-v0": MazeGenConfig("medium", "stitch", 5000, 201),
    "pointmaze-large-stitch-v0": MazeGenConfig("large", "stitch", 5000, 201),
    "pointmaze-giant-stitch-v0": MazeGenConfig("giant", "stitch", 5000, 201),
}


# ------------------------------------------------------------------------------------------ maze geometry
def free_and_vertex_cells(maze_map: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Free cells in row-major order, and the 'vertex' cells among them (OGBench's rule: not a straight
    corridor cell whose two opposite neighbours are free and the other two are walls)."""
    free, vertex = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            free.append((i, j))
            vertical = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1 \
                and maze_map[i, j + 1] == 1
            horizontal = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] == 1 \
                and maze_map[i + 1, j] == 1
            if not (vertical or horizontal):
                vertex.append((i, j))
    return free, vertex


def bfs_distances(maze_map: np.ndarray, source: tuple[int, int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """4-neighbour BFS from `source` through free cells, as the env runs it: distances (-1 for walls and
    unreached cells) and the cells in the order the search reaches them."""
    dist = np.full(maze_map.shape, -1, dtype=np.int64)
    dist[source] = 0
    queue, order = deque([source]), []
    while queue:
        i, j = queue.popleft()
        for di, dj in _NEIGHBOURS:
            ni, nj = i + di, j + dj
            if 0 <= ni < maze_map.shape[0] and 0 <= nj < maze_map.shape[1] and maze_map[ni, nj] == 0 \
                    and dist[ni, nj] == -1:
                dist[ni, nj] = dist[i, j] + 1
                queue.append((ni, nj))
                order.append((ni, nj))
    return dist, order


def stitch_goal_cells(maze_map: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """Cells exactly STITCH_CELLS BFS steps from `start`, in the order OGBench's BFS reaches them."""
    dist, order = bfs_distances(maze_map, start)
    return [c for c in order if dist[c] == STITCH_CELLS]


class Oracle:
    """The env's `get_oracle_subgoal`, precomputed: subgoal cell centre for every (goal cell, agent cell)."""

    def __init__(self, maze_env):
        self.env = maze_env
        m = np.asarray(maze_env.maze_map)
        h, w = m.shape
        self.table = np.zeros((h, w, h, w, 2), dtype=np.float64)
        for gi in range(h):
            for gj in range(w):
                dist, _ = bfs_distances(m, (gi, gj))
                for si in range(h):
                    for sj in range(w):
                        best = (si, sj)
                        for di, dj in _NEIGHBOURS:
                            ni, nj = si + di, sj + dj
                            if 0 <= ni < h and 0 <= nj < w and m[ni, nj] == 0 and dist[ni, nj] < dist[best]:
                                best = (ni, nj)
                        self.table[gi, gj, si, sj] = maze_env.ij_to_xy(best)

    def subgoal(self, xy: np.ndarray, goal_xy) -> np.ndarray:
        si, sj = self.env.xy_to_ij(xy)
        gi, gj = self.env.xy_to_ij(goal_xy)
        return self.table[gi, gj, si, sj]


# ------------------------------------------------------------------------------------------ generation
def make_env(cfg: MazeGenConfig):
    import gymnasium

    import ogbench.locomaze  # noqa: F401  (registers the maze envs)

    return gymnasium.make(cfg.env_id, terminate_at_goal=False, max_episode_steps=cfg.episode_steps, **cfg.env_kwargs)


def _episode_seeds(seed: int, split: int, episode: int) -> tuple[int, int]:
    state = np.random.SeedSequence([seed, split, episode]).generate_state(2)
    return int(state[0]), int(state[1])


def generate_episodes(
    cfg: MazeGenConfig, split: int, start: int, stop: int, env_oracle: bool = False
) -> dict[str, np.ndarray]:
    """Episodes [start, stop) of a split (0 train, 1 val); rows as OGBench stores them.

    `env_oracle=True` asks the env's own BFS oracle at every step, as OGBench's script does (same data,
    slower; the benchmark's baseline)."""
    env = make_env(cfg)
    maze = env.unwrapped
    oracle = Oracle(maze)
    free, vertex = free_and_vertex_cells(np.asarray(maze.maze_map))
    T = cfg.episode_steps
    n = (stop - start) * T
    obs = np.empty((n, 2), np.float64)
    act = np.empty((n, 2), np.float64)
    qpos = np.empty((n, maze.model.nq), np.float64)
    qvel = np.empty((n, maze.model.nv), np.float64)
    noise_std = cfg.noise
    row = 0
    for ep in range(start, stop):
        np_seed, env_seed = _episode_seeds(cfg.seed, split, ep)
        np.random.seed(np_seed)
        init_ij = free[np.random.randint(len(free))]
        if cfg.kind == "navigate":
            goal_ij = vertex[np.random.randint(len(vertex))]
        else:
            cands = stitch_goal_cells(np.asarray(maze.maze_map), init_ij)
            goal_ij = cands[np.random.randint(len(cands))] if cands else init_ij
        ob, _ = env.reset(seed=env_seed, options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))
        for _ in range(T):
            xy = maze.get_xy()
            subgoal = maze.get_oracle_subgoal(xy, maze.cur_goal_xy)[0] if env_oracle else \
                oracle.subgoal(xy, maze.cur_goal_xy)
            direction = subgoal - xy
            direction = direction / (np.linalg.norm(direction) + 1e-6)
            action = np.clip(direction + np.random.normal(0, noise_std, direction.shape), -1, 1)
            next_ob, _, _, _, info = maze.step(action)
            if info["success"] and cfg.kind == "navigate":
                maze.set_goal(vertex[np.random.randint(len(vertex))])
            obs[row], act[row] = ob, action
            qpos[row], qvel[row] = info["prev_qpos"], info["prev_qvel"]
            ob = next_ob
            row += 1
    env.close()
    terminals = np.zeros(n, bool)
    terminals[T - 1 :: T] = True
    return {
        "observations": obs.astype(np.float32),
        "actions": act.astype(np.float32),
        "terminals": terminals,
        "qpos": qpos.astype(np.float32),
        "qvel": qvel.astype(np.float32),
    }


def _work(args):
    return generate_episodes(*args)


def _chunks(n_episodes: int, steps: int, target_rows: int = 20_000) -> list[tuple[int, int]]:
    per = max(1, target_rows // steps)
    return [(a, min(a + per, n_episodes)) for a in range(0, n_episodes, per)]


def generate(
    cfg: MazeGenConfig,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """Generate the train and val splits; returns (train, val, seconds)."""
    cfg.check()
    jobs = [(cfg, 0, a, b) for a, b in _chunks(cfg.episodes, cfg.episode_steps)]
    jobs += [(cfg, 1, a, b) for a, b in _chunks(cfg.val_episodes, cfg.episode_steps)]
    total_rows = (cfg.episodes + cfg.val_episodes) * cfg.episode_steps
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, total_rows // 100_000 + 1))
    t0 = time.perf_counter()
    parts: dict[int, list[dict[str, np.ndarray]]] = {0: [], 1: []}
    if workers <= 1 or len(jobs) == 1:
        results = map(_work, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(min(workers, len(jobs)))
        results = pool.imap(_work, jobs)
    try:
        for job, res in zip(jobs, results):
            parts[job[1]].append(res)
            if progress:
                progress(len(res["terminals"]))
    finally:
        if pool is not None:
            pool.terminate()
    seconds = time.perf_counter() - t0

    def cat(split):
        if not parts[split]:
            return {k: v[:0] for k, v in parts[0][0].items()}
        return {k: np.concatenate([p[k] for p in parts[split]]) for k in parts[0][0]}

    return cat(0), cat(1), seconds


def val_path(train_path: Path) -> Path:
    return train_path.with_name(train_path.name[: -len(".npz")] + "-val.npz")


def sidecar_path(train_path: Path) -> Path:
    return train_path.with_name(train_path.name[: -len(".npz")] + ".augbench.json")


def write(train: dict, val: dict, path: Path, cfg: MazeGenConfig, seconds: float) -> Path:
    """Save as OGBench ships them (compressed npz, same keys and dtypes), the train file, the val file and the
    sidecar as one set: both data files are first written in full under temporary names, then the sidecar (the
    manifest: generation config and the SHA-256 of each data file) is committed, then the two files are renamed
    into place.  A kill anywhere leaves either the old set, or a set whose files do not match their manifest,
    which `check_set` (run on every load that is not cached) refuses; never a new val file beside an old train
    file that loads without complaint."""
    path = Path(path)
    if path.suffix != ".npz":
        raise BenchError(f"{path}: dataset files must end in .npz")
    staged = {}
    try:
        for p, arrays in ((val_path(path), val), (path, train)):
            staged[p] = save_npz(stage_path(p), arrays, compress=True)
        rows = len(train["terminals"]) + len(val["terminals"])
        write_json(sidecar_path(path), {
            "generator": "augbench.pointmaze", "config": asdict(cfg), "ogbench_name": cfg.ogbench_name,
            "rows": rows, "seconds": round(seconds, 3), "steps_per_second": round(rows / max(seconds, 1e-9), 1),
            "files": {p.name: {"sha256": file_sha256(t), "bytes": t.stat().st_size} for p, t in staged.items()},
        })
        for p, t in staged.items():
            os.replace(t, p)
    finally:
        for t in staged.values():
            with contextlib.suppress(OSError):
                t.unlink()
    return path


def check_set(train_path: Path) -> str | None:
    """None when the train and val files are the ones their sidecar names (or the files have no sidecar: an
    OGBench download); else what is wrong, in a few words."""
    train_path = Path(train_path)
    side = read_sidecar(train_path)
    if side is None:
        return ("its sidecar (the set's manifest) is missing or unreadable" if sidecar_path(train_path).exists()
                else None)
    files = side.get("files")
    if not isinstance(files, dict):
        return None  # written before manifests existed
    trio = (train_path, val_path(train_path), sidecar_path(train_path))
    stamp = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] if p.exists() else None for p in trio]
    marker = cache_dir() / "verified" / hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:24]
    if marker.exists():
        return None  # this exact set (paths, sizes, times) was hashed before
    for p in (train_path, val_path(train_path)):
        want = files.get(p.name)
        if not isinstance(want, dict):
            return f"the manifest does not name {p.name}"
        if not p.exists():
            return f"{p.name} is missing"
        if p.stat().st_size != want.get("bytes") or file_sha256(p) != want.get("sha256"):
            return f"{p.name} is not the file its manifest names (a generation was interrupted)"
    with contextlib.suppress(OSError):
        ensure_dir(marker.parent)
        marker.touch()
    return None


def read_sidecar(train_path: Path) -> dict | None:
    p = sidecar_path(Path(train_path))
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None
