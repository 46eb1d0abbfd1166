"""The array sampler: transitions as d3rlpy's buffer would give them, windows as d3rlpy's slicer cuts them,
determinism and resume, scalers from the original data, d3rlpy's update path, and 5M rows without objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.batches import TrajectorySampler, TransitionSampler, returns_to_go
from bench.dataset import Dataset, DatasetMeta, SpaceSpec
from bench.errors import BenchError
from bench.mixing import MixConfig


def episodes(lengths=(4, 7, 3, 5), terminal_at=((0, 3), (1, 2)), kind="trajectories") -> Dataset:
    """Episodes with distinct states (row r has observation (r, -r)); `terminal_at` lists (episode, step) terminals,
    which may sit in the middle of an episode; an episode whose last step is no terminal ends in a timeout."""
    n = sum(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    states = []
    for e, T in enumerate(lengths):
        s = np.arange(T + 1, dtype=np.float32) + 1000 * e
        states.append(np.stack([s, -s], 1))
    obs = np.concatenate([s[:-1] for s in states])
    nxt = np.concatenate([s[1:] for s in states])
    term = np.zeros(n, bool)
    for e, t in terminal_at:
        term[offsets[e] + t] = True
    ends = np.zeros(n, bool)
    ends[offsets[1:] - 1] = True
    rng = np.random.default_rng(0)
    meta = DatasetMeta(name="episodes", source="test", kind="trajectories", observation_space=SpaceSpec(shape=(2,)),
                       action_space=SpaceSpec(shape=(2,), low=[-1, -1], high=[1, 1]))
    ds = Dataset.from_episodes_arrays(observations=obs, actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                                      rewards=rng.normal(size=n).astype(np.float32), next_observations=nxt,
                                      terminals=term, episode_ends=ends, meta=meta).validate()
    if kind == "transitions":
        arrays = {k: np.array(v) for k, v in ds.arrays().items()}
        arrays["episode_offsets"] = np.arange(n + 1, dtype=np.int64)
        arrays["timeouts"] = ~arrays["terminals"]
        ds = Dataset(meta=ds.meta.model_copy(update={"kind": "transitions"}), **arrays).with_hash().validate()
    return ds


def rows_of(batch) -> set[bytes]:
    """Rows as bytes; at a terminal d3rlpy's picker zeroes s' (it is never bootstrapped from), so zero it here."""
    return {np.concatenate([o, a, [r], np.where(t > 0, 0.0, n), [t]]).astype(np.float32).tobytes() for o, a, r, n, t in
            zip(batch.observations, batch.actions, batch.rewards[:, 0], batch.next_observations,
                batch.terminals[:, 0])}


def d3rlpy_transitions(ds: Dataset) -> set[bytes]:
    """Every transition d3rlpy's buffer can draw from `ds.to_d3rlpy()` (its own transition picker)."""
    from bench.d3 import d3rlpy

    buf = ds.to_d3rlpy()
    picker = d3rlpy.dataset.BasicTransitionPicker()
    out = set()
    for ep in buf.episodes:
        for i in range(ep.transition_count):
            t = picker(ep, i)
            out.add(np.concatenate([t.observation, t.action, t.reward, t.next_observation,
                                    [t.terminal]]).astype(np.float32).tobytes())
    return out


@pytest.mark.parametrize("kind", ["trajectories", "transitions"])
def test_transitions_are_exactly_those_d3rlpys_buffer_gives(kind):
    ds = episodes(kind=kind)
    sampler = TransitionSampler(ds, batch_size=4096, seed=0)
    got = rows_of(sampler.sample())
    assert got == d3rlpy_transitions(ds)  # the same set: every row, none invented
    assert len(got) == len(ds)


def test_no_transition_bootstraps_across_an_episode_or_from_a_terminal():
    ds = episodes()
    b = TransitionSampler(ds, batch_size=2048, seed=1).sample()
    row = b.observations[:, 0].astype(int) % 1000 + np.asarray(ds.episode_offsets)[b.observations[:, 0].astype(int)
                                                                                  // 1000]
    np.testing.assert_array_equal(b.next_observations, np.asarray(ds.next_observations)[row])  # its own s'
    assert np.all(b.next_observations[:, 0] // 1000 == b.observations[:, 0] // 1000)  # same episode's states
    np.testing.assert_array_equal(b.terminals[:, 0], ds.terminals[row].astype(np.float32))
    # The mid-episode terminal (episode 1, step 2) stops bootstrapping; the timeouts do not.
    assert b.terminals[row == 4 + 2].min() == 1.0
    timeouts = np.flatnonzero(ds.timeouts)
    assert b.terminals[np.isin(row, timeouts)].max() == 0.0


def test_same_seed_same_batches_and_state_resumes_the_stream():
    ds = episodes()
    a = TransitionSampler(ds, episodes(kind="transitions"), MixConfig(mode="union"), batch_size=16, seed=3)
    b = TransitionSampler(ds, episodes(kind="transitions"), MixConfig(mode="union"), batch_size=16, seed=3)
    first = [a.sample() for _ in range(5)]
    for x in first:
        np.testing.assert_array_equal(x.observations, b.sample().observations)
    state = a.state()
    later = [a.sample().observations for _ in range(3)]
    c = TransitionSampler(ds, batch_size=16, seed=99, mix=MixConfig(mode="union"),
                          generated=episodes(kind="transitions"))
    c.set_state(state)
    for x in later:
        np.testing.assert_array_equal(x, c.sample().observations)
    other = TransitionSampler(ds, batch_size=16, seed=4).sample()
    assert not np.array_equal(other.observations, first[0].observations)


def test_the_sampler_never_touches_numpys_global_generator():
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    s = TransitionSampler(episodes(), batch_size=32, seed=0)
    for _ in range(3):
        s.sample()
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_generated_data_of_another_shape_is_refused():
    ds = episodes()
    arrays = {k: np.array(v) for k, v in ds.arrays().items()}
    arrays["observations"] = np.zeros((len(ds), 3), np.float32)
    arrays["next_observations"] = np.zeros((len(ds), 3), np.float32)
    other = Dataset(meta=ds.meta.model_copy(update={"observation_space": SpaceSpec(shape=(3,))}), **arrays)
    with pytest.raises(BenchError, match="generated data: 'observations' rows have shape"):
        TransitionSampler(ds, other, batch_size=4, seed=0)


# ---------------------------------------------------------------------------------------------- trajectories
def test_returns_to_go_known_answer():
    r = np.array([1, 2, 3, 10, 20], np.float32)
    np.testing.assert_allclose(returns_to_go(r, np.array([0, 3, 5])), [6, 5, 3, 30, 20])


def test_windows_are_d3rlpys_slices_and_never_cross_episodes():
    from bench.d3 import d3rlpy

    ds = episodes(terminal_at=((0, 3), (2, 2)))  # terminals only at episode ends: d3rlpy's episodes are ours
    L = 5
    sampler = TrajectorySampler(ds, batch_size=512, context=L, seed=0)
    b = sampler.sample()
    buf = ds.to_d3rlpy()
    slicer = d3rlpy.dataset.BasicTrajectorySlicer()
    offsets = np.asarray(ds.episode_offsets)
    for k in range(len(b)):
        last = b.observations[k, -1, 0]
        e, t = int(last // 1000), int(last % 1000)
        ref = slicer(buf.episodes[e], t, L)
        np.testing.assert_array_equal(b.observations[k], ref.observations)
        np.testing.assert_array_equal(b.actions[k], ref.actions)
        np.testing.assert_array_equal(b.rewards[k], ref.rewards)
        np.testing.assert_allclose(b.returns_to_go[k], ref.returns_to_go, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(b.timesteps[k], ref.timesteps)
        np.testing.assert_array_equal(b.masks[k], ref.masks)
        np.testing.assert_array_equal(b.terminals[k], ref.terminals)
        valid = b.masks[k] > 0  # every real step of the window belongs to the episode of its last step
        assert np.all(b.observations[k, valid, 0] // 1000 == e)
        assert t < offsets[e + 1] - offsets[e]
    ends = {int(o // 1000) for o in b.observations[:, -1, 0]}
    assert ends == set(range(ds.n_episodes))


def test_windows_run_through_a_mid_episode_terminal():
    ds = episodes(lengths=(10,), terminal_at=((0, 3),))
    b = TrajectorySampler(ds, batch_size=256, context=4, seed=0).sample()
    k = int(np.flatnonzero(b.observations[:, -1, 0] == 5)[0])  # window ending at step 5
    np.testing.assert_array_equal(b.observations[k, :, 0], [2, 3, 4, 5])
    np.testing.assert_array_equal(b.timesteps[k], [3, 4, 5, 6])
    np.testing.assert_array_equal(b.terminals[k, :, 0], [0, 1, 0, 0])


def test_trajectory_mixing_counts_and_transitions_refused():
    ds = episodes()
    gen = episodes(lengths=(6, 6))
    s = TrajectorySampler(ds, gen, MixConfig(mode="ratio", ratio=0.25), batch_size=8, context=3, seed=0)
    assert {s.sample().n_generated for _ in range(20)} == {2}
    with pytest.raises(BenchError, match="needs `trajectories` data"):
        TrajectorySampler(ds, episodes(kind="transitions"), batch_size=8, context=3, seed=0)


# ---------------------------------------------------------------------------------------------- the device path
def as_numpy(batch) -> dict:
    return {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in vars(batch).items()}


@pytest.mark.parametrize("mode", ["ratio", "union", "synthetic"])
def test_the_tensor_path_gives_the_numpy_paths_batches(mode):
    """The CUDA code path (arrays uploaded once, batches gathered as tensors) run on the CPU: same batches."""
    ds, gen, mix = episodes(), episodes(lengths=(6, 6)), MixConfig(mode=mode, ratio=0.3)
    for make_sampler in (lambda t: TransitionSampler(ds, gen, mix, batch_size=16, seed=2, as_tensors=t),
                         lambda t: TrajectorySampler(ds, gen, mix, batch_size=16, context=4, seed=2, as_tensors=t)):
        plain, tensors = make_sampler(False), make_sampler(True)
        for _ in range(5):
            a, b = plain.sample(), tensors.sample()
            assert isinstance(b.observations, torch.Tensor) and not isinstance(a.observations, torch.Tensor)
            for k, v in as_numpy(a).items():
                w = as_numpy(b)[k]
                assert np.asarray(v).dtype == np.asarray(w).dtype, k
                np.testing.assert_array_equal(v, w, err_msg=k)


@pytest.mark.parametrize("algo", ["iql", "dt", "drol"])
def test_trainers_train_identically_from_device_tensors(algo, toy_file):
    from bench import data

    ds = data.load("toy-maze", 1)
    extra = {"dt": {"preset": "cpu-smoke"}, "drol": {"actor_hidden_units": [32], "critic_hidden_units": [32],
                                                     "num_candidates": 4}}.get(algo, {})
    runs = []
    for tensors in (False, True):
        t = make(algo, ds, **extra)
        cls = type(t.sampler)
        kw = {"context": t.config.context_size} if algo == "dt" else {}
        t.sampler = cls(ds, batch_size=t.config.batch_size, seed=0, as_tensors=tensors, **kw)
        t.train(5)
        runs.append(t)
    if algo == "drol":
        sa, sb = runs[0].state()["actor"], runs[1].state()["actor"]
    else:
        sa, sb = ({f"{name}.{k}": v for name, m in vars(r.algo.impl.modules).items()
                   if isinstance(m, torch.nn.Module) for k, v in m.state_dict().items()} for r in runs)
    assert sa.keys() == sb.keys() and len(sa)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


# ---------------------------------------------------------------------------------------------- trainers
def make(algo, ds, generated=None, mix=None, seed=0, **overrides):
    from algos import TRAINERS
    from algos.base import resolve

    cls = TRAINERS.get(algo)
    t = cls(resolve(cls.config_class, cls.presets, {"batch_size": 32, **overrides}, "test"), seed=seed,
            device="cpu:0")
    t.build(ds, generated, mix)
    return t


def test_d3rlpy_update_path_equals_d3rlpys_own_update(toy_file):
    """The same batch through augbench's path and through d3rlpy's `algo.update(TransitionMiniBatch)` gives
    bit-identical weights (TD3+BC: observation scaler, target noise, delayed actor)."""
    from bench import data
    from bench.d3 import d3rlpy

    ds = data.load("toy-maze", 1)
    ours, theirs = make("td3bc", ds), make("td3bc", ds)
    for step in range(4):
        b = ours.sampler.sample()
        torch.manual_seed(step)
        ours.algo.impl.update(ours.torch_batch(b), ours.algo.grad_step)
        ours.algo.set_grad_step(ours.algo.grad_step + 1)
        mb = d3rlpy.dataset.TransitionMiniBatch(
            observations=b.observations, actions=b.actions, rewards=b.rewards,
            next_observations=b.next_observations, next_actions=np.zeros_like(b.actions), terminals=b.terminals,
            intervals=np.ones_like(b.rewards), transitions=[])
        torch.manual_seed(step)
        theirs.algo.update(mb)
    assert ours.algo.grad_step == theirs.algo.grad_step == 4
    for (name, x), (_, y) in zip(ours.algo.impl.modules.policy.state_dict().items(),
                                 theirs.algo.impl.modules.policy.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def test_scalers_are_fitted_on_the_original_data_whatever_the_mix(toy_file):
    from bench import data

    ds = data.load("toy-maze", 1)
    gen = episodes(kind="transitions")  # shape-compatible; shifted far away
    arrays = {k: np.array(v) for k, v in gen.arrays().items()}
    arrays["observations"] = np.asarray(ds.observations[:len(gen)]) + 100
    arrays["next_observations"] = np.asarray(ds.next_observations[:len(gen)]) + 100
    shifted = Dataset(meta=gen.meta, **arrays).with_hash()
    obs = np.asarray(ds.observations, np.float64)
    for mix in (MixConfig(mode="synthetic"), MixConfig(mode="union"), MixConfig(mode="ratio", ratio=0.9)):
        t = make("td3bc", ds, shifted, mix)
        scaler = t.algo.config.observation_scaler
        np.testing.assert_allclose(scaler.mean, obs.mean(0), rtol=1e-12)
        np.testing.assert_allclose(scaler.std, obs.std(0), rtol=1e-12)
        if mix.mode == "synthetic":
            assert t.sampler.sample().n_generated == 32


def test_a_scaler_augbench_cannot_fit_is_refused(toy_file):
    from algos.base import fit_scalers
    from bench import data
    from bench.d3 import d3rlpy

    cfg = d3rlpy.algos.IQLConfig(reward_scaler=d3rlpy.preprocessing.StandardRewardScaler())
    with pytest.raises(BenchError, match="reward_scaler StandardRewardScaler is not supported"):
        fit_scalers(cfg, data.load("toy-maze", 1), where="algo 'iql'")


def test_five_million_generated_rows_train_without_python_objects_per_row(toy_file, tmp_path):
    """5M generated transitions, memory-mapped from their cached file, train through the sampler: the memory
    allocated from opening the file to the 20th gradient step stays tens of MB (one Python object per row would
    be hundreds), and the arrays stay memory maps."""
    import tracemalloc

    from bench import data
    from bench.dataset import load

    ds = data.load("toy-maze", 1)
    n = 5_000_000
    rng = np.random.default_rng(0)
    obs = rng.uniform(-5, 25, (n, 2)).astype(np.float32)
    term = np.zeros(n, bool)
    meta = ds.meta.model_copy(update={"kind": "transitions", "source": "generated", "content_hash": "",
                                      "origins": ["original", "test"]})
    gen = Dataset(observations=obs, actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                  rewards=np.zeros(n, np.float32), next_observations=obs + 0.1, terminals=term, timeouts=~term,
                  episode_offsets=np.arange(n + 1, dtype=np.int64), origin=np.ones(n, np.int16),
                  source_episodes=np.zeros((n, 2), np.int32), meta=meta)
    path = gen.save(tmp_path / "big.npz")
    del gen, obs
    load(path)  # valid (checked once, outside the measurement)
    make("iql", ds)  # imports and first-call allocations outside the measurement
    tracemalloc.start()
    big = load(path, check=False)
    t = make("iql", ds, big, MixConfig(mode="ratio", ratio=0.5))
    t.train(20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert t.grad_steps == 20 and len(big) == n
    assert all(isinstance(a, np.memmap) for a in t.sampler.arrays[1].values())
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.1f} MB"
