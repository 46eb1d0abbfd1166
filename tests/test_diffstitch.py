"""DiffStitch: step estimation, inpainting of the stitch's ends, qualification, pair selection, the ablation
switches, the authors' return-lookup quirk, exact maze rewards, the full-trajectory output (a
run: test_contracts)."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from bench.dataset import Dataset, DatasetMeta, SpaceSpec
from blocks.normalize import EmpiricalCDF
from methods import AUGMENTERS
from methods.diffstitch import REASONS, exact_reward_fn

DS = AUGMENTERS.get("diffstitch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread (tests/conftest.py)


@pytest.fixture(scope="module")
def toy(toy_task1):
    return toy_task1


@pytest.fixture(scope="module")
def fitted(toy, one_torch_thread):
    """DiffStitch fitted on the toy maze with an ensemble good enough to judge one step."""
    aug = DS(DS.resolve_config({"preset": "cpu-smoke", "ensemble_epochs": 8, "ensemble_width": 64}), seed=0)
    aug.fit(toy)
    return aug


def line_dataset(episodes: int = 6, steps: int = 40) -> Dataset:
    """States (x, 5 + e) with x rising 0.1 per step: along each line the cosine similarity (in CDF space, where
    the line stays a line with y constant) is largest where the x values agree."""
    obs, nxt, ends = [], [], []
    for e in range(episodes):
        s = np.stack([0.1 * np.arange(steps + 1) + 0.03 * e, np.full(steps + 1, 5.0 + e)], 1)
        obs.append(s[:-1])
        nxt.append(s[1:])
        end = np.zeros(steps, bool)
        end[-1] = True
        ends.append(end)
    obs, nxt, ends = np.concatenate(obs), np.concatenate(nxt), np.concatenate(ends)
    n = len(obs)
    meta = DatasetMeta(name="lines", source="test", kind="trajectories", observation_space=SpaceSpec(shape=(2,)),
                       action_space=SpaceSpec(shape=(1,), low=[-1], high=[1]))
    return Dataset.from_episodes_arrays(observations=obs, actions=np.full((n, 1), 0.5, np.float32),
                                        rewards=np.zeros(n, np.float32), next_observations=nxt,
                                        terminals=np.zeros(n, bool), episode_ends=ends, meta=meta).validate()


class ExactEnsemble:
    """The true line dynamics: x + 0.1, y unchanged, reward 0."""

    def sample(self, s, a, generator, deterministic=False):
        return s + torch.tensor([0.1, 0.0]), torch.zeros(len(s))


def wired(ds: Dataset, **cfg) -> DS:
    """A DiffStitch on `ds` without a trained diffusion model: `_sample` and the inverse model are set by the
    test."""
    aug = DS(DS.resolve_config({"preset": "cpu-smoke", **cfg}), seed=0)
    aug._prepare(ds, EmpiricalCDF.fit(ds.observations), EmpiricalCDF.fit(ds.actions))
    aug.model = torch.nn.Module()
    aug.model.inverse = lambda s, s2: torch.zeros(s.shape[:-1] + (ds.actions.shape[1],))
    aug.ensemble, aug.model_error, aug.label_max = ExactEnsemble(), None, 0.0
    aug.begin_sampling(0)
    return aug


def test_step_estimation_returns_the_known_offset():
    ds = line_dataset()
    aug = wired(ds, horizon=16, window_lo=3, window_hi=12, similarity=0.999999, sources=1, targets=1,
                sources_per_iteration=4, candidates=1, delta=10.0)
    aug._pools()
    # one source (episode 0, step 0) and one target: episode 0 from step 7, whose first state the imagined
    # continuation (the true line from the source) reaches at position 7
    aug.src = (np.array([0]), np.array([0]), np.array([0.0]))
    aug.tgt = (np.array([0]), np.array([7]), np.array([0.0]))
    line = aug.episodes.states[0, :16]
    calls = []

    def fake(known, values, cond):
        calls.append((known.clone(), values.clone()))
        return torch.where(known, values, line.expand_as(values))

    aug._sample = fake
    out = aug.stitch_batch()
    assert out["n"] == 4 and out["k"].tolist() == [7, 7, 7, 7]
    known, values = calls[1]  # the stitch: source at 0, the target's states from position k on
    assert known[0, :, 0].tolist() == [True] + [False] * 6 + [True] * 9
    torch.testing.assert_close(values[0, 7:], aug.episodes.states[0, 7:16])
    assert (out["reason"] == -1).all()  # the true dynamics: accepted


def test_stitch_ends_are_the_source_and_target_states_and_inpainting_holds(fitted, toy):
    fitted.begin_sampling(0)
    fitted._pools()
    out = fitted.stitch_batch()
    assert out["n"] > 0
    obs, off = np.asarray(toy.observations), toy.episode_offsets
    src = obs[off[out["source_episode"]] + out["source_step"]]
    tgt = obs[off[out["target_episode"]] + out["target_step"]]
    states, k = out["states"].numpy(), out["k"].numpy()
    np.testing.assert_array_equal(states[:, 0], src)
    np.testing.assert_array_equal(states[np.arange(len(k)), k], tgt)
    c = fitted.config
    assert ((k >= c.window_lo) & (k < c.window_hi)).all()


def _real_window(aug, toy, episode: int, start: int, k: int, corrupt: bool):
    """Wire `aug` so that the stitch IS the real data from (episode, start) for k steps, with the real actions
    (or corrupted ones) as the inverse model's output."""
    off = toy.episode_offsets
    rows = off[episode] + start + np.arange(aug.config.horizon)
    aug.src = (np.array([episode]), np.array([start]), np.array([-1e9]))  # the return check passes
    aug.tgt = (np.array([episode]), np.array([start + k]), np.array([0.0]))
    real = aug.episodes.states[episode, start:start + aug.config.horizon]
    aug._sample = lambda known, values, cond: torch.where(known, values, real.expand_as(values))
    act = np.asarray(toy.actions)[rows[:-1]]
    if corrupt:
        act = -act
    a_norm = torch.as_tensor(aug.act_cdf.transform(act))
    aug.model.inverse = lambda s, s2: a_norm.expand(s.shape[0], -1, -1)
    return aug.stitch_batch()


def test_qualification_accepts_real_data_and_rejects_corrupted_actions(fitted, toy):
    import dataclasses

    aug = DS(dataclasses.replace(fitted.config, fixed_step=10, similarity=-1.0, sources_per_iteration=1,
                                 delta_quantile=0.5), seed=0)  # delta: the model's median error on real steps
    aug.load_fitted(toy, fitted.fitted_state())
    model = aug.model
    aug.begin_sampling(0)
    real = _real_window(aug, toy, episode=3, start=20, k=10, corrupt=False)
    assert real["reason"].tolist() == [-1]
    aug.model = model
    bad = _real_window(aug, toy, episode=3, start=20, k=10, corrupt=True)
    assert bad["reason"].tolist() == [REASONS.index("dynamics")]
    assert bad["error"][0, :10].max() > aug.delta > real["error"][0, :10].max()


def test_return_check_and_the_authors_lookup_quirk():
    ds = line_dataset()
    aug = wired(ds, horizon=16, window_lo=3, window_hi=12, similarity=-1.0, fixed_step=5, sources_per_iteration=1,
                candidates=3, delta=10.0)
    line = aug.episodes.states[0, :16]
    aug._sample = lambda known, values, cond: torch.where(known, values, line.expand_as(values))
    # target pool ascending by return-to-go: (-50, -10, 0); the source needs at least -20 (rewards are 0 here,
    # so the stitch's return is gamma^5 x the target's)
    aug.src = (np.array([0]), np.array([0]), np.array([-20.0]))
    aug.tgt = (np.array([1, 2, 3]), np.array([0, 0, 0]), np.array([-50.0, -10.0, 0.0]))
    chosen, code = [], []
    for seed in range(12):
        aug.begin_sampling(seed)
        out = aug.stitch_batch()
        chosen.append(int(out["target_episode"][0]))
        code.append(out["reason"].item())
    # intended: the chosen target's own return decides
    assert {(t, r) for t, r in zip(chosen, code)} <= {(1, REASONS.index("return")), (2, -1), (3, -1)}
    assert len(set(chosen)) == 3
    # the authors' code: the pool entry at the chosen candidate's rank among the qualifying (every candidate
    # qualifies, so the rank is its position among the 3 drawn, a uniform index into the ascending pool)
    import dataclasses

    aug.config = dataclasses.replace(aug.config, rtg_lookup="code")
    seen = set()
    for seed in range(12):
        aug.begin_sampling(seed)
        out = aug.stitch_batch()
        expected = -1 if out["new_rtg"].item() >= -20.0 else REASONS.index("return")
        assert out["reason"].item() == expected
        seen.add(round(out["new_rtg"].item() / 0.99 ** 5, 6))
    assert seen <= {-50.0, -10.0, 0.0} and len(seen) > 1


def test_pairs_are_the_best_windows_with_h_plus_1_steps_left(toy):
    aug = wired(toy, sources=50, targets=5)
    aug._pools()
    H, lengths = aug.config.horizon, np.diff(toy.episode_offsets)
    r, gamma = np.asarray(toy.rewards, np.float64), aug.config.discount
    scores = []
    for e, (a, b) in enumerate(zip(toy.episode_offsets[:-1], toy.episode_offsets[1:])):
        rtg = np.zeros(b - a + 1)
        for t in range(b - a - 1, -1, -1):
            rtg[t] = r[a + t] + gamma * rtg[t + 1]
        scores += [(rtg[t], e, t) for t in range(lengths[e] - H)]  # L - t >= H + 1
    best = sorted(s for s, _, _ in scores)
    np.testing.assert_allclose(np.sort(aug.src[2]), best[-50:])
    np.testing.assert_allclose(np.sort(aug.tgt[2]), best[-5:])
    assert (aug.src[1] <= lengths[aug.src[0]] - H - 1).all()
    assert aug.pool_sizes["windows"] == len(scores)


def test_exact_maze_rewards_equal_the_dataset_labels(toy):
    fn = exact_reward_fn(toy)
    r, term = fn(torch.as_tensor(np.array(toy.observations)))
    np.testing.assert_array_equal(r.numpy(), np.asarray(toy.rewards))
    np.testing.assert_array_equal(term.numpy(), np.asarray(toy.terminals))
    # the test toy never reaches task 1's goal: check the rule at the goal itself and either side of the radius
    import gymnasium

    import ogbench.locomaze  # noqa: F401

    maze = gymnasium.make(toy.meta.simulator.env_id).unwrapped
    goal = np.asarray(maze.ij_to_xy(maze.task_infos[0]["goal_ij"]), np.float32)
    s = torch.as_tensor(np.stack([goal, goal + [0.99, 0.0], goal + [0.0, -1.01]]).astype(np.float32))
    r, term = fn(s)
    assert r.tolist() == [0.0, 0.0, -1.0] and term.tolist() == [True, True, False]
    assert exact_reward_fn(line_dataset()) is None


def test_ablations_fixed_step_no_qualification_no_guidance(fitted, toy):
    import dataclasses

    def run(**kw):
        aug = DS(dataclasses.replace(fitted.config, **kw), seed=0)
        aug.load_fitted(toy, fitted.fitted_state())
        conds = []
        sample = aug._sample
        aug._sample = lambda known, values, cond: conds.append(cond) or sample(known, values, cond)
        aug.begin_sampling(0)
        aug._pools()
        return aug.stitch_batch(), conds

    out, _ = run(fixed_step=6)
    assert out["n"] and (out["k"] == 6).all()
    out, _ = run(qualify=False, delta_quantile=0.0, delta=1e-12)
    assert out["n"] and (out["reason"] == -1).all()
    out, _ = run(delta_quantile=0.0, delta=1e-12)
    assert out["n"] and (out["reason"] == REASONS.index("dynamics")).all()
    _, conds = run(rtg_guidance=False)
    assert conds and all(c is None for c in conds)
    _, conds = run()
    assert conds and all(c is not None and c.shape[1] == 1 for c in conds)


def test_generate_counts_and_the_full_trajectory_output(fitted, toy):
    import dataclasses

    # the smoke-sized diffusion model's stitches all fail the dynamics check: qualification off, to get data
    aug = DS(dataclasses.replace(fitted.config, qualify=False), seed=0)
    aug.load_fitted(toy, fitted.fitted_state())
    aug.begin_sampling(1)
    bridge = aug.generate()
    stats = aug.stats
    assert stats["accepted"] > 0 and stats["dynamics"] == 0
    assert stats["attempts"] == stats["accepted"] + sum(stats[r] for r in REASONS)
    assert stats["accepted"] == bridge.n_episodes and stats["transitions"] == len(bridge)
    assert stats["rewards"] == "exact"
    seg = bridge.meta.extra["segments"]
    assert len(seg["source_step"]) == bridge.n_episodes
    full = DS(dataclasses.replace(aug.config, emit="full"), seed=0)
    full.load_fitted(toy, fitted.fitted_state())
    full.begin_sampling(1)
    out = full.generate()
    assert out.n_episodes == bridge.n_episodes  # the same stitches, with their source prefix and target suffix
    off, ob, nx = toy.episode_offsets, np.asarray(toy.observations), np.asarray(toy.next_observations)
    src, tgt = out.source_episodes[out.episode_offsets[:-1], 0], out.source_episodes[out.episode_offsets[:-1], 1]
    np.testing.assert_array_equal(out.observations[out.episode_offsets[:-1]], ob[off[src]])  # episode starts
    np.testing.assert_array_equal(out.next_observations[out.episode_offsets[1:] - 1], nx[off[tgt + 1] - 1])
    lengths = np.diff(out.episode_offsets)
    expected = np.asarray(seg["source_step"]) + np.diff(bridge.episode_offsets) + \
        (np.diff(off)[tgt] - np.asarray(seg["target_step"]))
    np.testing.assert_array_equal(lengths, expected)


def test_bad_configs_are_refused_in_one_line():
    from bench.errors import BenchError

    for bad, words in [({"horizon": 18, "dim_mults": [1, 2, 4]}, "divisible by 4"),
                       ({"window_hi": 16}, "step window"), ({"rtg_lookup": "index"}, "rtg_lookup"),
                       ({"elites": 9}, "elites")]:
        with pytest.raises(BenchError, match=words):
            DS.resolve_config({"preset": "cpu-smoke", **bad})


def test_minmax_normaliser_known_answer_and_the_limits_option(toy):
    from blocks.normalize import MinMax

    x = np.array([[0.0, 5.0], [10.0, 5.0], [5.0, 5.0]])
    m = MinMax.fit(x)
    np.testing.assert_allclose(m.transform(x), [[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # constant dim: scale 1
    np.testing.assert_allclose(m.inverse(np.array([[2.0, 0.0], [-0.5, 0.0]])), [[10.0, 5.0], [2.5, 5.0]])  # clipped
    aug = DS(DS.resolve_config({"preset": "cpu-smoke", "normalizer": "limits"}), seed=0)
    aug.fit(toy)
    aug.begin_sampling(0)
    aug._pools()
    out = aug.stitch_batch()
    assert out["n"] > 0 and np.isfinite(out["states"].numpy()).all()
    assert isinstance(aug.obs_cdf, MinMax)


def _inverse_dvr(ds: Dataset, model, s_in, s2_in, rows) -> float:
    """True DVR of the inverse model's actions on the dataset's own (s, s') pairs."""
    from bench import dvr

    cdf = EmpiricalCDF.fit(ds.actions)
    with torch.no_grad():
        a = cdf.inverse(model.inverse(torch.as_tensor(s_in[rows]), torch.as_tensor(s2_in[rows])).numpy())
    res = dvr.simulator_for(ds).step(ds.observations[rows], a)
    err = (np.abs(res.next_obs - ds.next_observations[rows]) / dvr.delta_scale(ds)).max(1)
    return float(((err > dvr.DEFAULT_TOLERANCE) | res.bad_state).mean())


def test_delta_inverse_input_scales_and_learns_the_point_mass_inverse(toy):
    """`inverse_input: delta` reads [z(s), (s' - s) / std(s' - s)] in raw units (known answer on the wiring), and
    on the toy maze's real pairs its actions obey the true dynamics after a short fit, where the code's CDF-space
    pair input, same budget, still violates them at most steps (the reason the `cpu-small` preset uses it)."""
    from methods.diffstitch import _Model

    assert DS.resolve_config({"preset": "cpu-small"}).inverse_input == "delta"
    assert DS.resolve_config({"preset": "pointmaze"}).inverse_input == "pair"  # the code elsewhere
    s, s2 = np.asarray(toy.observations, np.float32), np.asarray(toy.next_observations, np.float32)
    a_cdf = EmpiricalCDF.fit(toy.actions)
    obs_cdf = EmpiricalCDF.fit(toy.observations)
    target = torch.as_tensor(a_cdf.transform(toy.actions), dtype=torch.float32)
    rows = np.random.default_rng(0).choice(len(s), 2000, replace=False)
    rates = {}
    for mode in ("delta", "pair"):
        cfg = DS.resolve_config({"preset": "cpu-smoke", "inverse_input": mode})
        model = _Model.build(cfg, 2, 2, torch.Generator().manual_seed(0), toy)
        if mode == "delta":
            mu, sd, step = model.inv.stats.numpy()
            np.testing.assert_allclose(mu, s.mean(0), rtol=1e-5)
            np.testing.assert_allclose(step, (s2 - s).std(0), rtol=1e-4)
            probe = torch.nn.Linear(4, 4, bias=False)
            torch.nn.init.eye_(probe.weight)
            net, model.inv.net = model.inv.net, probe
            out = model.inverse(torch.as_tensor(s[:5]), torch.as_tensor(s2[:5])).detach().numpy()
            np.testing.assert_allclose(out, np.concatenate([(s[:5] - mu) / sd, (s2[:5] - s[:5]) / step], 1),
                                       rtol=1e-5, atol=1e-6)
            model.inv.net = net
            s_in, s2_in = s, s2
        else:
            s_in, s2_in = obs_cdf.transform(s), obs_cdf.transform(s2)
        x, x2 = torch.as_tensor(s_in), torch.as_tensor(s2_in)
        opt = torch.optim.Adam(model.inv.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(1)
        for _ in range(800):
            i = torch.randint(len(s), (512,), generator=g)
            loss = torch.nn.functional.mse_loss(model.inverse(x[i], x2[i]), target[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        rates[mode] = _inverse_dvr(toy, model, s_in, s2_in, rows)
    assert rates["delta"] < 0.1 < 0.5 < rates["pair"], rates


def test_delta_inverse_fits_saves_and_stitches(toy):
    aug = DS(DS.resolve_config({"preset": "cpu-smoke", "inverse_input": "delta"}), seed=0)
    aug.fit(toy)
    state = aug.fitted_state()
    again = DS(aug.config, seed=0)
    again.load_fitted(toy, state)  # the delta scales travel with the weights
    torch.testing.assert_close(again.model.inv.stats, aug.model.inv.stats)
    s = torch.as_tensor(toy.observations[:8])
    torch.testing.assert_close(again.model.inverse(s, s + 0.01), aug.model.inverse(s, s + 0.01))
    aug.begin_sampling(0)
    aug._pools()
    out = aug.stitch_batch()
    assert out["n"] > 0 and np.isfinite(out["actions"].numpy()).all()
