"""Dynamics Violation Rate (bench.dvr): known answers against the true simulators, the model figure, the command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from bench import data, dvr
from bench.data.ogbench_data import task_goal
from bench.dataset import generated_transitions
from bench.errors import BenchError


def changed(ds, rows=None, **arrays):
    """A generated transitions dataset: the rows of `ds` with some arrays replaced."""
    rows = np.arange(len(ds)) if rows is None else rows
    obs = arrays.pop("observations", np.asarray(ds.observations)[rows])
    nxt = arrays.pop("next_observations", np.asarray(ds.next_observations)[rows])
    return generated_transitions(ds, "test", {}, rows, obs, nxt, **arrays)


@pytest.fixture
def toy(toy_file, monkeypatch, tmp_path):
    monkeypatch.setenv("AUGBENCH_CACHE", str(toy_file.parent.parent))
    return data.load("toy-maze", 1)


def moving(ds) -> np.ndarray:
    """Rows whose true step moves more than the tolerance in some dimension."""
    delta = np.abs(np.asarray(ds.next_observations, np.float64) - np.asarray(ds.observations, np.float64))
    return (delta / dvr.delta_scale(ds) > dvr.DEFAULT_TOLERANCE).any(1)


def test_original_point_maze_data_obeys_its_simulator(toy):
    fig = dvr.simulator_dvr(toy, toy)
    assert fig["dvr"] == 0.0 and fig["violations"] == 0 and fig["invalid_states"] == 0
    assert fig["error_quantiles"]["99"] < 1e-3  # float32 rounding, four orders below the tolerance
    assert fig["gta_dynamic_mse"] < 1e-10
    assert fig["segments"]["count"] == toy.n_episodes and fig["segments"]["violating_share"] == 0.0
    assert fig["curve"]["dvr"][0] == 0.0  # zero even at tolerance 1e-3


def test_full_length_episodes_of_another_maze_obey_the_simulator(tmp_path):
    """OGBench's navigate protocol (1000-step episodes) in the large maze, through OGBench's own loader."""
    from bench.data import pointmaze
    from tests.conftest import make_files

    cfg = pointmaze.MazeGenConfig(maze="large", kind="navigate", episodes=10, episode_steps=1001, seed=4)
    path = make_files(cfg, tmp_path)
    from bench.data.ogbench_data import load_ogbench

    ds = load_ogbench(cfg.ogbench_name, 1, path=path, cache=False)
    fig = dvr.simulator_dvr(ds, ds)
    assert fig["rows"] >= 9000 and fig["dvr"] == 0.0 and fig["error_quantiles"]["99"] < 1e-3


def test_standing_still_random_actions_and_noise_are_flagged(toy):
    rng = np.random.default_rng(0)
    still = dvr.simulator_dvr(toy, changed(toy, next_observations=np.asarray(toy.observations)))
    move = moving(toy)
    assert move.mean() > 0.9
    assert still["violations"] == move.sum()  # exactly the rows where the true dynamics move
    random_actions = rng.uniform(-1, 1, toy.actions.shape).astype(np.float32)
    fig = dvr.simulator_dvr(toy, changed(toy, actions=random_actions))
    assert fig["dvr"] > 0.95
    noisy = changed(toy, next_observations=np.asarray(toy.next_observations)
                    + rng.normal(0, 1, toy.observations.shape).astype(np.float32) * dvr.delta_scale(toy).astype(
                        np.float32))
    assert dvr.simulator_dvr(toy, noisy)["dvr"] > 0.9


def test_noise_augmenter_in_the_maze_breaks_the_dynamics_at_the_walls(toy):
    from methods import AUGMENTERS

    cls = AUGMENTERS.get("noise")
    aug = cls(cls.config_class.from_dict({"scale": 1.0, "size": 0.5}), seed=0)
    aug.fit(toy)
    aug.begin_sampling(0)
    fig = dvr.simulator_dvr(toy, aug.generate())
    # s and s' move by one offset: the free point mass is translation invariant, so the violations are the
    # states pushed into walls and the steps that would have hit one
    assert fig["dvr"] > 0.3 and fig["invalid_states"] > 0.2 * fig["checked"]


def _cell_xy(sim, i, j):
    return np.array([j * sim.unit - sim.off_x, i * sim.unit - sim.off_y])


def test_a_jump_through_a_wall_is_flagged_and_a_state_inside_a_wall_is_counted(toy):
    sim = dvr.simulator_for(toy)
    grid = sim.maze_map
    i, j = next((i, j) for i in range(grid.shape[0]) for j in range(grid.shape[1] - 2)
                if grid[i, j] == 0 and grid[i, j + 1] == 1 and grid[i, j + 2] == 0)
    near = _cell_xy(sim, i, j) + np.array([0.5, 0.0])  # free, 1.5 from the wall on its right
    beyond = _cell_xy(sim, i, j + 2) - np.array([1.5, 0.0])  # free, just past the wall
    inside = _cell_xy(sim, i, j + 1)  # the middle of the wall
    obs = np.array([near, near, inside], np.float32)
    nxt = np.array([beyond, near + [0.2, 0.0], inside + [0.2, 0.0]], np.float32)
    act = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], np.float32)
    fig = dvr.simulator_dvr(toy, changed(toy, rows=np.zeros(3, int), observations=obs, next_observations=nxt,
                                         actions=act))
    assert fig["violations"] == 2  # the jump, and the state inside the wall; the honest step is not flagged
    assert fig["invalid_states"] == 1
    assert sim.in_wall(obs).tolist() == [False, False, True]


def test_nan_states_are_invalid_not_errors(toy):
    obs = np.asarray(toy.observations)[:10].copy()
    fig = dvr.simulator_dvr(toy, changed(toy, rows=np.arange(10), observations=obs))
    assert fig["violations"] == 0
    gen = changed(toy, rows=np.arange(10), observations=obs)
    gen.observations[3] = np.nan  # bypass validation: an augmenter's raw output
    fig = dvr.simulator_dvr(toy, gen)
    assert fig["violations"] == 1 and fig["invalid_states"] == 1


def test_trajectories_report_segments_and_positions(toy):
    fig = dvr.simulator_dvr(toy, changed(toy))
    assert fig.get("segments") is None  # transitions output
    bad = replace(toy, next_observations=np.asarray(toy.next_observations).copy())
    lengths = toy.episode_lengths
    mid = toy.episode_offsets[:-1] + lengths // 2
    bad.next_observations[mid[:10]] += 50 * dvr.delta_scale(toy).astype(np.float32)  # 10 segments broken mid-way
    seg = dvr.simulator_dvr(toy, bad)["segments"]
    assert seg["violating_share"] == pytest.approx(10 / toy.n_episodes)
    half = int(lengths[0] // 2)
    assert seg["position_dvr"][half] == pytest.approx(10 / toy.n_episodes)
    assert seg["position_dvr"][0] == 0.0 and seg["position_mean_error"][half] > 1.0


def test_original_hopper_data_obeys_mujoco_and_noise_does_not(minari_dataset):
    ds = data.load("minari:augbench/hopper-random-v0")
    assert ds.meta.simulator.obs_to_state == "qpos[1:],qvel=observations"
    fig = dvr.simulator_dvr(ds, ds)
    assert fig["checked"] + fig["unrecoverable"] == len(ds)
    assert fig["dvr"] == 0.0 and fig["error_quantiles"]["99"] < 1e-3
    assert fig["reward_mae"] < 1e-5  # the env's reward from (s, a) equals the recorded one
    from methods import AUGMENTERS

    cls = AUGMENTERS.get("noise")
    aug = cls(cls.config_class.from_dict({"scale": 0.1}), seed=0)
    aug.fit(ds)
    aug.begin_sampling(0)
    assert dvr.simulator_dvr(ds, aug.generate())["dvr"] > 0.8


SMALL_MODEL = {"members": 3, "elites": 2, "hidden": (64, 64), "max_epochs": 8}


def test_model_dvr_of_original_data_is_near_zero_and_of_random_transitions_near_one(toy):
    rng = np.random.default_rng(1)
    fig = dvr.model_dvr(toy, toy, config=SMALL_MODEL)
    assert fig["source"] == "model" and fig["dvr"] < 0.05
    scale = dvr.delta_scale(toy).astype(np.float32)
    jumps = rng.normal(0, 5, toy.observations.shape).astype(np.float32) * scale
    rand = changed(toy, next_observations=np.asarray(toy.observations) + jumps)
    assert dvr.model_dvr(toy, rand, config=SMALL_MODEL)["dvr"] > 0.9


def test_shape_mismatch_is_one_clear_error(toy, minari_dataset):
    hopper = data.load("minari:augbench/hopper-random-v0")
    with pytest.raises(BenchError, match="generated data: 'observations' has rows of shape"):
        dvr.simulator_dvr(toy, hopper)


def test_a_dataset_without_a_simulator_gets_the_model_figure_only(toy):
    meta = toy.meta.model_copy(update={"simulator": toy.meta.simulator.model_copy(update={"obs_to_state": None})})
    plain = replace(toy, meta=meta)
    assert dvr.simulator_for(plain) is None
    with pytest.raises(BenchError, match="only the model DVR applies"):
        dvr.simulator_dvr(plain, plain)
    figs = dvr.measure(plain, plain, "nosim-test", model_config=SMALL_MODEL)
    assert list(figs) == ["model"]


def test_bench_dvr_command_and_run_record(tmp_path, toy_file, results):
    from tests.test_cli import assert_one_line_error, bench

    env = {"AUGBENCH_CACHE": str(toy_file.parent.parent)}
    res = bench("dvr", "toy-maze", "--task", "1", "--augmenter", "none", env=env)
    assert res.returncode == 0, res.stderr
    assert "DVR of the original data" in res.stdout and "simulator: DVR 0.00%" in res.stdout
    assert "goal labels (not part of the DVR): reward wrong on 0.00% of rows, terminal on 0.00%" in res.stdout
    res = bench("dvr", "toy-maze", "--task", "1", "--augmenter", "noise", "--aug-config", '{"scale": 1.0}',
                "--plot", str(tmp_path / "p.png"), env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "p.png").stat().st_size > 1000
    line = next(ln for ln in res.stdout.splitlines() if "simulator: DVR" in ln)
    assert float(line.split("DVR ")[1].split("%")[0]) > 30
    cached = sorted((toy_file.parent.parent / "augmented").glob("*.simulator-dvr.json"))
    assert cached
    before = {p: p.stat().st_mtime_ns for p in cached}
    again = bench("dvr", "toy-maze", "--task", "1", "--augmenter", "noise", "--aug-config", '{"scale": 1.0}', env=env)
    assert again.returncode == 0 and all(p.stat().st_mtime_ns == t for p, t in before.items())  # computed once
    for args, needle in ((("--augmenter", "nosie"), "--augmenter: unknown augmenter 'nosie'"),
                         (("--augmenter", "noise", "--tolerance", "-1"), "--tolerance: must be a positive"),
                         (("--augmenter", "noise", "--plot", str(tmp_path)), "--plot:")):
        snap = set((toy_file.parent.parent / "augmented").iterdir())
        bad = bench("dvr", "toy-maze", "--task", "1", *args, env=env)
        assert_one_line_error(bad, needle)
        assert set((toy_file.parent.parent / "augmented").iterdir()) == snap
    run = bench("run", "--dataset", "toy-maze", "--task", "1", "--algo", "iql", "--augmenter", "noise",
                "--aug-config", '{"scale": 1.0}', "--steps", "4", "--eval-episodes", "1", "--device", "cpu:0",
                "--algo-config", '{"batch_size": 8}', env=env)
    assert run.returncode == 0, run.stderr
    result = json.loads(next(results.rglob("result.json")).read_text())
    rec = result["augmentation"]["dvr"]
    assert rec["source"] == "simulator" and rec["dvr"] > 0.3 and rec["tolerance"] == dvr.DEFAULT_TOLERANCE


def test_a_sweep_collects_the_dvr_of_each_augmentation(tmp_path, toy_file, results, monkeypatch):
    from bench import collect, sweep
    from tests.test_sweep import write

    monkeypatch.setenv("AUGBENCH_CACHE", str(toy_file.parent.parent))
    study = write(tmp_path, "name: dvrcol\ndatasets:\n  - {name: toy-maze, tasks: [1]}\naugmenters:\n"
                  "  - {name: none}\n  - {name: noise, config: {scale: 1.0, size: 0.2}}\nalgos:\n"
                  "  - {name: iql, config: {batch_size: 16, hidden_units: [32, 32]}}\nseeds: [0, 1]\n"
                  "training: {steps: 4}\nevaluation: {episodes: 1}\nexecutor: {kind: debug}\n")
    _, runs = sweep.expand(study)
    assert sweep.run_local(runs, 1, False, in_process=True)["failed"] == 0
    path, _, n = collect.collect("dvrcol", runs)
    import pandas as pd

    frame = pd.read_parquet(path)
    noise = frame[frame["augmenter"] == "noise"]
    assert n == 4 and noise["augmentation.dvr.dvr"].notna().all() and (noise["augmentation.dvr.dvr"] > 0.3).all()
    assert frame[frame["augmenter"] == "none"]["augmentation.dvr"].isna().all()


def test_goal_labels_of_the_original_data_agree_and_moved_or_flipped_rows_are_counted(toy):
    """Known answers: OGBench's own labels agree everywhere; k flipped rewards are k reward errors (and no
    terminal errors); states moved onto the goal without relabelling are label errors of both kinds."""
    fig = dvr.label_check(toy, toy)
    assert fig["reward_label_errors"] == 0.0 and fig["terminal_label_errors"] == 0.0
    assert fig["labelled_goal"] == fig["at_goal"] and fig["reward_mae"] == 0.0
    goal, tol = task_goal(toy.meta)
    assert goal.shape == (2,) and tol == 1.0  # the point maze's success radius
    n = len(toy)
    xy = np.asarray(toy.observations)[:, :2]
    far = np.linalg.norm(xy - goal, axis=1) > tol + 1.0
    rew = np.asarray(toy.rewards).copy()
    flip = np.flatnonzero(far)[:7]
    rew[flip] = 0.0  # labelled as goal rows far from the goal
    fig = dvr.label_check(toy, changed(toy, rewards=rew))
    assert fig["reward_label_errors"] == pytest.approx(7 / n) and fig["terminal_label_errors"] == 0.0
    assert fig["labelled_goal"] == pytest.approx(fig["at_goal"] + 7 / n) and fig["goal_label_precision"] < 1.0
    assert fig["reward_mae"] == pytest.approx(7 / n)
    near = np.asarray(toy.rewards, np.float64) + 0.3 * np.where(np.asarray(toy.rewards) < -0.5, 1, -1)
    fig = dvr.label_check(toy, changed(toy, rewards=near.astype(np.float32)))  # inexact, yet the nearer label
    assert fig["reward_label_errors"] == 0.0 and fig["reward_mae"] == pytest.approx(0.3, abs=1e-6)
    rows = np.flatnonzero(far)[:20]
    obs = np.asarray(toy.observations)[rows].copy()
    obs[:, :2] = goal  # moved onto the goal, labels kept (-1, not terminal)
    fig = dvr.label_check(toy, changed(toy, rows, observations=obs, next_observations=obs))
    assert fig["reward_label_errors"] == 1.0 and fig["terminal_label_errors"] == 1.0
    assert fig["at_goal"] == 1.0 and fig["labelled_goal"] == 0.0 and fig["goal_label_recall"] == 0.0


def test_goal_labels_need_singletask_maze_data(minari_dataset):
    ds = data.load("minari:augbench/hopper-random-v0")
    with pytest.raises(BenchError, match="singletask maze"):
        dvr.label_check(ds, ds)


def test_noise_relabelled_by_the_task_has_no_label_errors_and_copied_labels_have_some(toy):
    """The `noise` switch `labels`: copies keep labels that a moved state can contradict; "task" relabels every
    moved row by the task's rule, so the label check finds none wrong (the known answer) and the states, the
    dynamics and the sampled rows are those of "copy" (only the labels change)."""
    from methods.noise import GaussianStateNoise, NoiseConfig

    def gen(labels):
        aug = GaussianStateNoise(NoiseConfig(scale=1.0, labels=labels), seed=4)
        aug.fit(toy)
        return aug.generate()

    copied, relabelled = gen("copy"), gen("task")
    np.testing.assert_array_equal(copied.observations, relabelled.observations)
    assert dvr.label_check(toy, copied)["reward_label_errors"] > 0  # a std of noise moves rows off / onto the goal
    fig = dvr.label_check(toy, relabelled)
    assert fig["reward_label_errors"] == 0.0 and fig["terminal_label_errors"] == 0.0 and fig["reward_mae"] == 0.0
    assert fig["at_goal"] > 0  # the check saw goal rows


def test_noise_labels_from_the_task_need_a_maze(minari_dataset):
    from methods.noise import GaussianStateNoise, NoiseConfig

    aug = GaussianStateNoise(NoiseConfig(labels="task"), seed=0)
    with pytest.raises(BenchError, match="labels 'task' needs an OGBench maze"):
        aug.fit(data.load("minari:augbench/hopper-random-v0"))
