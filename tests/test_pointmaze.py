"""Generation follows OGBench's protocol, replays exactly in the simulator, and is reproducible."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from bench.data import pointmaze
from tests.conftest import SMALL_NAVIGATE, SMALL_STITCH, raw_arrays


@pytest.mark.parametrize("maze", pointmaze.MAZES)
def test_precomputed_oracle_equals_env_oracle(maze):
    env = pointmaze.make_env(pointmaze.MazeGenConfig(maze=maze))
    m = env.unwrapped
    oracle = pointmaze.Oracle(m)
    free, _ = pointmaze.free_and_vertex_cells(np.asarray(m.maze_map))
    rng = np.random.default_rng(0)
    for _ in range(1500):
        s, g = free[rng.integers(len(free))], free[rng.integers(len(free))]
        xy = np.array(m.ij_to_xy(s)) + rng.uniform(-1.9, 1.9, 2)
        goal = np.array(m.ij_to_xy(g)) + rng.uniform(-1, 1, 2)
        expected, _ = m.get_oracle_subgoal(xy, goal)
        np.testing.assert_array_equal(oracle.subgoal(xy, goal), expected)


def test_vertex_cells_and_stitch_goals_follow_the_protocol():
    env = pointmaze.make_env(pointmaze.MazeGenConfig(maze="medium"))
    m = np.asarray(env.unwrapped.maze_map)
    free, vertex = pointmaze.free_and_vertex_cells(m)
    assert len(free) == 26 and len(vertex) == 21  # OGBench's medium maze (data-and-trainer facts 1.4)
    for start in free:
        dist, _ = pointmaze.bfs_distances(m, start)
        goals = pointmaze.stitch_goal_cells(m, start)
        assert sorted(goals) == sorted(zip(*np.nonzero(dist == 4)))
        assert all(dist[g] == 4 for g in goals)


@pytest.mark.parametrize("cfg", [SMALL_STITCH, SMALL_NAVIGATE], ids=["stitch", "navigate"])
def test_files_have_ogbench_keys_dtypes_and_episode_layout(cfg, stitch_file, navigate_file):
    path = stitch_file if cfg.kind == "stitch" else navigate_file
    for p, n_ep in ((path, cfg.episodes), (pointmaze.val_path(path), cfg.val_episodes)):
        a = raw_arrays(p)
        assert set(a) == {"observations", "actions", "terminals", "qpos", "qvel"}
        rows = n_ep * cfg.episode_steps
        assert a["observations"].shape == (rows, 2) and a["observations"].dtype == np.float32
        assert a["actions"].shape == (rows, 2) and a["actions"].dtype == np.float32
        assert a["terminals"].shape == (rows,) and a["terminals"].dtype == np.bool_
        assert a["qpos"].shape == (rows, 2) and a["qpos"].dtype == np.float32
        assert a["qvel"].shape == (rows, 2) and a["qvel"].dtype == np.float32
        # One True per episode, on its last row (the TimeLimit truncation), as OGBench's files have.
        assert np.array_equal(np.flatnonzero(a["terminals"]), np.arange(1, n_ep + 1) * cfg.episode_steps - 1)
        assert np.abs(a["actions"]).max() <= 1.0
        np.testing.assert_array_equal(a["observations"], a["qpos"])  # the point's observation is its qpos
        # Noise 0.5 on a unit direction: clipping at +-1 happens, but not always.
        assert 0.05 < np.mean(np.abs(a["actions"]) == 1.0) < 0.6


@pytest.mark.parametrize("cfg", [SMALL_STITCH, SMALL_NAVIGATE], ids=["stitch", "navigate"])
def test_every_transition_replays_in_the_simulator(cfg, stitch_file, navigate_file):
    path = stitch_file if cfg.kind == "stitch" else navigate_file
    a = raw_arrays(path)
    env = pointmaze.make_env(cfg)
    env.reset(seed=0)
    maze = env.unwrapped
    worst = 0.0
    for t in range(len(a["actions"]) - 1):
        if a["terminals"][t]:
            continue  # the episode's last row has no successor
        maze.set_state(a["qpos"][t].astype(np.float64), a["qvel"][t].astype(np.float64))
        _, _, _, _, info = maze.step(a["actions"][t].astype(np.float64))
        worst = max(worst, float(np.abs(info["qpos"] - a["qpos"][t + 1]).max()))
        np.testing.assert_allclose(info["qvel"], a["qvel"][t + 1], atol=1e-4)
    assert worst < 1e-5, worst


def test_seeded_generation_is_bit_for_bit_reproducible(tmp_path):
    cfg = replace(SMALL_STITCH, episodes=12, episode_steps=31, seed=11)
    digests = []
    for k, workers in enumerate((1, 2)):
        train, val, sec = pointmaze.generate(cfg, workers=workers)
        p = pointmaze.write(train, val, tmp_path / f"run{k}" / "pointmaze-medium-stitch-v0.npz", cfg, sec)
        digests.append([hashlib.sha256(q.read_bytes()).hexdigest() for q in (p, pointmaze.val_path(p))])
    assert digests[0] == digests[1]  # same bytes, whatever the number of worker processes
    other, _, _ = pointmaze.generate(replace(cfg, seed=12), workers=1)
    assert not np.array_equal(other["observations"], train["observations"])


def test_navigate_draws_new_goals_and_stitch_stays():
    # navigate episodes keep moving between goals; stitch agents settle near a goal 4 cells away.
    nav, _, _ = pointmaze.generate(replace(SMALL_NAVIGATE, episodes=3), workers=1)
    st, _, _ = pointmaze.generate(replace(SMALL_STITCH, episodes=10, episode_steps=201), workers=1)
    nav_tail = nav["observations"].reshape(3, -1, 2)[:, -200:]
    st_tail = st["observations"].reshape(10, -1, 2)[:, -60:]
    assert np.ptp(nav_tail, axis=1).max(axis=1).mean() > 4.0
    assert np.median(np.ptp(st_tail, axis=1).max(axis=1)) < 4.0


def test_arena_toy_is_ogbench_arena_map_relabelled_by_ogbench_and_evaluated_there(tmp_path, monkeypatch):
    """toy-arena: OGBench's open arena (maze_type='arena' in its point-maze env), singletask task 1 relabelled by
    OGBench's own loader, and every env the harness makes (evaluation, DVR simulator) has the arena's map."""
    from bench import data
    from bench.dvr import simulator_for
    from bench.errors import BenchError
    from bench.evaluate import make_env

    monkeypatch.setitem(data.TOY_PRESETS, "toy-arena", replace(data.TOY_PRESETS["toy-arena"], episodes=12))
    data.make("toy-arena")
    ds = data.load("toy-arena", 1)
    assert ds.meta.simulator.env_kwargs == {"maze_type": "arena"}
    env = make_env(ds.meta)
    try:
        maze = env.unwrapped
        assert (np.asarray(maze.maze_map)[1:-1, 1:-1] == 0).all()  # open 6 x 6 room
        goal = np.asarray(maze.task_infos[0]["goal_xy"])
        tol = maze._goal_tol
    finally:
        env.close()
    at_goal = np.linalg.norm(ds.qpos[:, :2] - goal, axis=1) <= tol
    assert at_goal.any()
    np.testing.assert_array_equal(ds.rewards, at_goal.astype(np.float32) - 1.0)  # OGBench: success - 1
    np.testing.assert_array_equal(ds.terminals, at_goal)  # singletask masks mark the goal
    sim = simulator_for(ds)
    assert sim is not None and (np.asarray(sim.maze_map)[1:-1, 1:-1] == 0).all()
    with pytest.raises(BenchError, match="has no such task"):
        data.load("toy-arena", 2)
    with pytest.raises(BenchError, match="vertex cells"):
        pointmaze.MazeGenConfig(maze="arena", kind="navigate").check()
