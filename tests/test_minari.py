"""Minari: a dataset made here with Minari's own DataCollector, loaded and converted with exact alignment."""

from __future__ import annotations

import numpy as np
import pytest

from bench import data
from tests.conftest import MINARI_ID as DATASET_ID


def test_minari_episodes_align_exactly(minari_dataset):
    ds = data.load(f"minari:{DATASET_ID}")
    episodes = list(minari_dataset.iterate_episodes())
    ends = [bool(ep.terminations[-1]) for ep in episodes]
    assert any(ends) and not all(ends), "the fixture must hold both terminated and truncated episodes"
    assert ds.n_episodes == len(episodes)
    for e, ep in enumerate(episodes):
        a, b = ds.episode_offsets[e], ds.episode_offsets[e + 1]
        T = len(ep.actions)
        assert b - a == T
        # First and last transitions, exactly.
        np.testing.assert_array_equal(ds.observations[a], ep.observations[0].astype(np.float32))
        np.testing.assert_array_equal(ds.next_observations[a], ep.observations[1].astype(np.float32))
        np.testing.assert_array_equal(ds.actions[a], ep.actions[0])
        np.testing.assert_array_equal(ds.observations[b - 1], ep.observations[T - 1].astype(np.float32))
        np.testing.assert_array_equal(ds.next_observations[b - 1], ep.observations[T].astype(np.float32))
        np.testing.assert_array_equal(ds.actions[b - 1], ep.actions[T - 1])
        assert ds.rewards[a] == np.float32(ep.rewards[0]) and ds.rewards[b - 1] == np.float32(ep.rewards[-1])
        # Whole episode, too.
        np.testing.assert_array_equal(ds.observations[a:b], ep.observations[:-1].astype(np.float32))
        assert ds.terminals[b - 1] == bool(ep.terminations[-1])
        # A termination wins over a simultaneous truncation: bootstrapping must stop.
        assert ds.timeouts[b - 1] == (bool(ep.truncations[-1]) and not ep.terminations[-1])
        assert not ds.timeouts[a:b - 1].any() and not ds.terminals[a:b - 1].any()
    assert ds.meta.reference_scores.min == -20.0 and ds.meta.reference_scores.max == 3000.0
    assert ds.meta.simulator.env_id == "Hopper-v5"
    # Through d3rlpy: terminated episodes stop bootstrapping, truncated ones bootstrap from their last s'.
    mdp = ds.to_d3rlpy()
    assert len(mdp.episodes) == ds.n_episodes
    assert [bool(ep.terminated) for ep in mdp.episodes] == ends


def test_missing_minari_dataset_says_where(tmp_path, monkeypatch):
    from bench.errors import BenchError

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "nothing"))
    with pytest.raises(BenchError, match="not found in .*nothing"):
        data.load("minari:mujoco/hopper/medium-v0")
