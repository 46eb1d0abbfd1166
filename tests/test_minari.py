"""Minari: a dataset made here with Minari's own DataCollector, loaded and converted with exact alignment."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from bench import data

DATASET_ID = "augbench/hopper-random-v0"


@pytest.fixture
def minari_dataset(tmp_path, monkeypatch):
    """Five short random Hopper episodes: random Hopper falls (termination) unless the 25-step limit
    truncates it first, so both endings occur."""
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gymnasium.make("Hopper-v5", max_episode_steps=25), record_infos=False)
    env.action_space.seed(0)
    for k in range(8):
        env.reset(seed=k)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample() * (0.2 if k % 2 else 1.0))
            done = terminated or truncated
    ds = env.create_dataset(dataset_id=DATASET_ID, algorithm_name="random", author="augbench",
                            author_email="tests@augbench.invalid", code_permalink="https://example.invalid",
                            description="test data", ref_min_score=-20.0, ref_max_score=3000.0)
    env.close()
    return minari.load_dataset(DATASET_ID)


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
