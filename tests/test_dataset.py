"""The canonical dataset: npz round trip, memory mapping, validation, and the one d3rlpy conversion."""

from __future__ import annotations

import numpy as np
import pytest

from bench import data
from bench.dataset import SCHEMA_VERSION, Dataset, DatasetMeta, SpaceSpec, load
from bench.errors import BenchError


def tiny(kind="trajectories", n_eps=3, T=4, terminal_last=(True, False, False)) -> Dataset:
    """Hand-made episodes with distinct observations so every transition is identifiable."""
    obs, nxt, act, rew, term, ends = [], [], [], [], [], []
    base = 0.0
    for e in range(n_eps):
        states = base + np.arange(T + 1, dtype=np.float32)[:, None] * np.array([[1.0, 0.5]], np.float32)
        base += 100.0
        obs.append(states[:-1]); nxt.append(states[1:])
        act.append(np.full((T, 2), 0.1 * e, np.float32)); rew.append(np.arange(T, dtype=np.float32) + 10 * e)
        t = np.zeros(T, bool); t[-1] = terminal_last[e]; term.append(t)
        en = np.zeros(T, bool); en[-1] = True; ends.append(en)
    meta = DatasetMeta(name="tiny", source="test", kind=kind,
                       observation_space=SpaceSpec(shape=(2,)),
                       action_space=SpaceSpec(shape=(2,), low=[-1, -1], high=[1, 1]))
    return Dataset.from_episodes_arrays(
        observations=np.concatenate(obs), actions=np.concatenate(act), rewards=np.concatenate(rew),
        next_observations=np.concatenate(nxt), terminals=np.concatenate(term), episode_ends=np.concatenate(ends),
        meta=meta).validate()


def test_round_trip_is_exact_and_memory_mapped(tmp_path, ogbench_home):
    ds = data.load("pointmaze-medium-navigate-v0", task=1)
    p = ds.save(tmp_path / "d.npz")
    back = load(p)
    for k, v in ds.arrays().items():
        b = getattr(back, k)
        assert isinstance(b, np.memmap), k
        assert b.dtype == v.dtype
        np.testing.assert_array_equal(b, v)
    assert back.meta == ds.meta
    assert back.meta.schema_version == SCHEMA_VERSION
    # Saving is deterministic: same dataset, same bytes.
    assert ds.save(tmp_path / "e.npz").read_bytes() == p.read_bytes()


def test_schema_version_mismatch_is_refused(tmp_path):
    ds = tiny()
    bad = ds.__class__(**{**{k: getattr(ds, k) for k in ds.arrays()},
                          "meta": ds.meta.model_copy(update={"schema_version": 99})})
    p = bad.save(tmp_path / "old.npz")
    with pytest.raises(BenchError, match="schema version 99"):
        load(p)


def test_truncated_and_altered_files_are_refused(tmp_path):
    p = tiny().save(tmp_path / "d.npz")
    raw = p.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BenchError, match="truncated or corrupt"):
        load(tmp_path / "cut.npz")
    # Flip one float inside the observations member: the content hash catches it.
    arr = tiny().observations
    needle = arr.tobytes()[:8]
    i = raw.index(needle)
    flipped = raw[:i] + np.float32(123.0).tobytes() + raw[i + 4:]
    (tmp_path / "alt.npz").write_bytes(flipped)
    with pytest.raises(BenchError, match="content hash mismatch"):
        load(tmp_path / "alt.npz")


@pytest.mark.parametrize("mutate,match", [
    (lambda a: a.__setitem__("observations", np.where(np.arange(12)[:, None] == 5, np.nan, a["observations"])
                             .astype(np.float32)), "NaN or inf .*row 5"),
    (lambda a: a.__setitem__("rewards", a["rewards"][:-1]), "'rewards' has 11 rows"),
    (lambda a: a.__setitem__("actions", a["actions"].astype(np.float64)), "'actions' has dtype float64"),
    (lambda a: a.__setitem__("actions", a["actions"] + 3.0), "outside the action space"),
    (lambda a: a.__setitem__("timeouts", np.ones(12, bool)), "both a terminal and a timeout"),
])
def test_validation_errors_name_the_problem(mutate, match):
    ds = tiny()
    arrays = {k: np.array(v) for k, v in ds.arrays().items()}
    mutate(arrays)
    with pytest.raises(BenchError, match=match):
        Dataset(meta=ds.meta, **arrays).validate()


def test_empty_dataset_is_refused():
    ds = tiny()
    arrays = {k: np.array(v)[:0] for k, v in ds.arrays().items()}
    arrays["episode_offsets"] = np.zeros(1, np.int64)
    with pytest.raises(BenchError, match="empty"):
        Dataset(meta=ds.meta, **arrays).validate()


def _d3rlpy_transitions(mdp):
    from d3rlpy.dataset import BasicTransitionPicker

    picker = BasicTransitionPicker()
    out = []
    for ep in mdp.episodes:
        for i in range(ep.transition_count):
            t = picker(ep, i)
            out.append((t.observation, t.action, float(t.reward[0]), t.next_observation, float(t.terminal)))
    return out


def _assert_same_transitions(ds: Dataset, mdp):
    got = _d3rlpy_transitions(mdp)
    assert len(got) == len(ds)
    for i, (o, a, r, no, term) in enumerate(got):
        np.testing.assert_array_equal(o, ds.observations[i])
        np.testing.assert_array_equal(a, ds.actions[i])
        assert r == ds.rewards[i]
        assert term == float(ds.terminals[i])
        if not ds.terminals[i]:
            # Bootstrapping transitions see exactly their own s', never the next episode's first state.
            np.testing.assert_array_equal(no, ds.next_observations[i])


def test_d3rlpy_conversion_known_answer():
    ds = tiny(terminal_last=(True, False, True))
    mdp = ds.to_d3rlpy()
    assert len(mdp.episodes) == 3
    _assert_same_transitions(ds, mdp)
    # The timeout episode's last transition bootstraps from its true final state.
    last_of_ep1 = _d3rlpy_transitions(mdp)[7]
    np.testing.assert_array_equal(last_of_ep1[3], np.array([104.0, 102.0], np.float32))
    assert last_of_ep1[4] == 0.0


def test_d3rlpy_conversion_transitions_kind():
    ds = tiny()
    arrays = {k: np.array(v) for k, v in ds.arrays().items()}
    n = len(ds)
    arrays["episode_offsets"] = np.arange(n + 1, dtype=np.int64)
    arrays["timeouts"] = ~arrays["terminals"]
    flat = Dataset(meta=ds.meta.model_copy(update={"kind": "transitions"}), **arrays).validate()
    mdp = flat.to_d3rlpy()
    assert len(mdp.episodes) == n
    _assert_same_transitions(flat, mdp)


@pytest.mark.parametrize("task", [None, 1, 3])
def test_d3rlpy_conversion_on_ogbench_data_stops_at_goals_and_episode_ends(ogbench_home, task):
    ds = data.load("pointmaze-medium-navigate-v0", task=task)
    mdp = ds.to_d3rlpy()
    _assert_same_transitions(ds, mdp)
    got = _d3rlpy_transitions(mdp)
    # Every goal-reaching step stops bootstrapping; no transition bootstraps across an episode boundary.
    goal_steps = np.flatnonzero(ds.terminals)
    assert all(got[i][4] == 1.0 for i in goal_steps)
    if task is not None:
        assert len(goal_steps) > 0 or task == 3
    ends = ds.episode_offsets[1:] - 1
    for e in ends[:-1]:
        if not ds.terminals[e]:
            assert not np.array_equal(got[e][3], ds.observations[e + 1])


def test_generated_trajectories_builder_records_segments_and_their_joins():
    from bench.dataset import generated_trajectories

    src = tiny()
    # two segments: 3 steps stitching episode 0 (from its step 1) into episode 2 (at its step 2), then a 2-step
    # rollout from episode 1 that ends in a terminal
    states = np.array([[0, 0], [1, 1], [2, 2], [3, 3], [10, 10], [11, 11], [12, 12]], np.float32)
    obs = np.concatenate([states[0:3], states[4:6]])
    nxt = np.concatenate([states[1:4], states[5:7]])
    ds = generated_trajectories(src, "stitcher", {"seed": 0}, observations=obs, actions=np.zeros((5, 2)),
                                rewards=np.arange(5), next_observations=nxt, lengths=[3, 2], source_episode=[0, 1],
                                source_step=[1, 0], target_episode=[2, -1], target_step=[2, -1],
                                terminals=[False, False, False, False, True])
    assert ds.meta.kind == "trajectories" and ds.n_episodes == 2 and list(ds.episode_offsets) == [0, 3, 5]
    assert ds.timeouts.tolist() == [False, False, True, False, False] and ds.terminals[-1]
    assert ds.source_episodes.tolist() == [[0, 2], [0, 2], [0, 2], [1, -1], [1, -1]]
    assert ds.meta.extra["segments"] == {"source_step": [1, 0], "target_step": [2, -1]}
    assert ds.meta.origins == ["original", "stitcher"] and set(ds.origin.tolist()) == {1}
    assert ds.meta.extra["parent_hash"] == src.meta.content_hash
    with pytest.raises(BenchError, match="next_observations differs"):  # a segment must be contiguous
        generated_trajectories(src, "stitcher", {}, observations=obs, actions=np.zeros((5, 2)), rewards=np.zeros(5),
                               next_observations=nxt[::-1].copy(), lengths=[3, 2], source_episode=[0, 1],
                               source_step=[0, 0])
    with pytest.raises(BenchError, match="outside the source dataset's 3"):
        generated_trajectories(src, "stitcher", {}, observations=obs, actions=np.zeros((5, 2)), rewards=np.zeros(5),
                               next_observations=nxt, lengths=[3, 2], source_episode=[0, 7], source_step=[0, 0])
    with pytest.raises(BenchError, match="'source_step' has shape"):
        generated_trajectories(src, "stitcher", {}, observations=obs, actions=np.zeros((5, 2)), rewards=np.zeros(5),
                               next_observations=nxt, lengths=[3, 2], source_episode=[0, 1], source_step=[0])
