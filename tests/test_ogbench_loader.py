"""OGBench's own loader on generated files: goal-conditioned and singletask labels as OGBench defines them."""

from __future__ import annotations

import numpy as np
import ogbench
import pytest

from bench import data
from bench.errors import BenchError
from tests.conftest import SMALL_NAVIGATE, SMALL_STITCH


def test_goal_conditioned_matches_ogbench(ogbench_home):
    ds = data.load("pointmaze-medium-stitch-v0")
    _, ref, _ = ogbench.make_env_and_datasets("pointmaze-medium-stitch-v0",
                                              dataset_path=str(ogbench_home / "pointmaze-medium-stitch-v0.npz"))
    np.testing.assert_array_equal(ds.observations, ref["observations"])
    np.testing.assert_array_equal(ds.next_observations, ref["next_observations"])
    np.testing.assert_array_equal(ds.actions, ref["actions"])
    assert len(ds) == SMALL_STITCH.episodes * (SMALL_STITCH.episode_steps - 1)
    assert ds.n_episodes == SMALL_STITCH.episodes
    # OGBench terminals are trajectory ends: timeouts here, never true terminals.
    np.testing.assert_array_equal(ds.timeouts, ref["terminals"] == 1.0)
    assert not ds.terminals.any() and not ds.rewards.any()
    assert ds.meta.goal_conditioned and ds.meta.task is None
    assert ds.meta.simulator.env_id == "pointmaze-medium-v0"
    assert ds.meta.extra["generated_by"]["seed"] == SMALL_STITCH.seed


@pytest.mark.parametrize("task", [1, 2, 3, 4, 5])
def test_singletask_labels_are_ogbench_relabelling(ogbench_home, task):
    name = f"pointmaze-medium-navigate-singletask-task{task}-v0"
    ds = data.load(name)
    assert ds == ds and ds.meta.task == task
    env, ref, _ = ogbench.make_env_and_datasets(
        name, dataset_path=str(ogbench_home / "pointmaze-medium-navigate-v0.npz"), add_info=True)
    np.testing.assert_array_equal(ds.rewards, ref["rewards"])
    np.testing.assert_array_equal(ds.terminals, ref["masks"] == 0.0)
    # By hand: a goal state is within 1.0 of the task's (noise-free) goal, measured on s (qpos of the row).
    env.reset()
    goal = np.asarray(env.unwrapped.cur_goal_xy)
    at_goal = np.linalg.norm(ds.qpos[:, :2] - goal, axis=1) <= 1.0
    np.testing.assert_array_equal(ds.terminals, at_goal)
    np.testing.assert_array_equal(ds.rewards, at_goal.astype(np.float32) - 1.0)
    # Trajectory ends stay timeouts unless the last step is itself a goal state.
    ends = np.zeros(len(ds), bool)
    ends[ds.episode_offsets[1:] - 1] = True
    np.testing.assert_array_equal(ds.timeouts, ends & ~at_goal)
    assert ds.meta.simulator.env_id == f"pointmaze-medium-singletask-task{task}-v0"


def test_task_option_equals_singletask_name(ogbench_home):
    a = data.load("pointmaze-medium-navigate-v0", task=2)
    b = data.load("pointmaze-medium-navigate-singletask-task2-v0")
    assert a.meta.content_hash == b.meta.content_hash


def test_navigate_data_reaches_every_task_goal_somewhere(ogbench_home):
    # The known-answer checks above need goal states to exist in the small navigate file.
    hits = [int(data.load("pointmaze-medium-navigate-v0", task=t).terminals.sum()) for t in range(1, 6)]
    assert sum(h > 0 for h in hits) >= 3, hits


def test_missing_file_names_the_file_and_how_to_get_it(ogbench_home):
    with pytest.raises(BenchError) as e:
        data.load("pointmaze-large-stitch-v0")
    msg = str(e.value)
    assert "pointmaze-large-stitch-v0.npz" in msg and str(ogbench_home) in msg
    assert "bench data make pointmaze-large-stitch-v0" in msg and "download" in msg
    with pytest.raises(BenchError, match="antmaze-large-navigate-v0.npz"):
        data.load("antmaze-large-navigate-v0")


def test_unknown_task_and_name(ogbench_home):
    with pytest.raises(BenchError, match="no such task"):
        data.load("pointmaze-medium-stitch-v0", task=9)
    with pytest.raises(BenchError, match="did you mean pointmaze-medium-stitch-v0"):
        data.load("pointmaze-medum-stitch-v0")


def test_val_split(ogbench_home):
    val = data.load("pointmaze-medium-navigate-v0", split="val")
    assert val.n_episodes == SMALL_NAVIGATE.val_episodes


def test_canonical_cache_is_reused_and_invalidated(ogbench_home, tmp_path, monkeypatch):
    monkeypatch.setenv("AUGBENCH_CACHE", str(tmp_path / "own-cache"))
    first = data.load("pointmaze-medium-stitch-v0", task=2)
    assert not isinstance(first.observations, np.memmap)  # converted through OGBench's loader
    second = data.load("pointmaze-medium-stitch-v0", task=2)
    assert isinstance(second.observations, np.memmap)  # memory-mapped from the cache
    assert second.meta == first.meta
    for k, v in first.arrays().items():
        np.testing.assert_array_equal(getattr(second, k), v)
    # A different source file at the same path is not served from the stale cache entry.
    home2 = tmp_path / "ogb2"
    home2.mkdir()
    import shutil
    from dataclasses import replace

    from bench.data import pointmaze
    from tests.conftest import SMALL_STITCH, make_files

    make_files(replace(SMALL_STITCH, seed=99), home2)
    target = ogbench_home / "pointmaze-medium-stitch-v0.npz"
    target.unlink()
    shutil.copy(home2 / target.name, target)
    (ogbench_home / "pointmaze-medium-stitch-v0-val.npz").unlink()
    shutil.copy(pointmaze.val_path(home2 / target.name), ogbench_home / "pointmaze-medium-stitch-v0-val.npz")
    shutil.copy(pointmaze.sidecar_path(home2 / target.name), pointmaze.sidecar_path(target))  # the set's manifest
    third = data.load("pointmaze-medium-stitch-v0", task=2)
    assert not isinstance(third.observations, np.memmap)
    assert third.meta.content_hash != first.meta.content_hash
