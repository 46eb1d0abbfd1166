"""Known-answer tests of blocks.dynamics (Gaussian ensemble) and blocks.normalize (ZScore, EmpiricalCDF)."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from blocks.dynamics import EnsembleConfig, GaussianEnsemble, holdout_size
from blocks.normalize import EmpiricalCDF, ZScore

S, A = 3, 2  # state and action dims of the linear test system
SMALL = EnsembleConfig(members=4, elites=3, hidden=(32, 32), max_epochs=30)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny matmuls: one thread (tests/conftest.py)


def linear_system(n: int, seed: int = 0):
    """s' = s + s As + a Bs, r = sum(s) - a_0, noiseless; s, a uniform in [-1, 1]."""
    rng = np.random.default_rng(seed)
    mat_a = np.random.default_rng(100).normal(0, 0.3, (S, S))
    mat_b = np.random.default_rng(101).normal(0, 0.3, (A, S))
    obs = rng.uniform(-1, 1, (n, S)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, A)).astype(np.float32)
    next_obs = (obs + obs @ mat_a + act @ mat_b).astype(np.float32)
    rewards = (obs.sum(1) - act[:, 0]).astype(np.float32)
    return obs, act, next_obs, rewards


def fit(cfg: EnsembleConfig = SMALL, seed: int = 0, n: int = 3000, log=None):
    model = GaussianEnsemble(S, A, cfg)
    stats = model.fit(*linear_system(n), generator=torch.Generator().manual_seed(seed), log=log)
    return model, stats


def holdout_rows(seed: int, n: int, cfg: EnsembleConfig = SMALL) -> np.ndarray:
    """The holdout rows `fit` draws: the same generator draws (initialisation, then one permutation)."""
    gen = torch.Generator().manual_seed(seed)
    GaussianEnsemble(S, A, cfg).reset_parameters(gen)
    return torch.randperm(n, generator=gen)[n - holdout_size(n, cfg):].numpy()


def member_mse(model, member, obs, act, next_obs, rewards) -> float:
    pred_next, pred_r = model.predict(obs, act, member=member)
    got = np.concatenate([pred_next.numpy() - obs, pred_r.numpy()[:, None]], 1)
    return float(((got - np.concatenate([next_obs - obs, rewards[:, None]], 1)) ** 2).mean())


@pytest.fixture(scope="module")
def fitted():
    epochs = []
    model, stats = fit(log=epochs.append)
    return model, stats, epochs


# -- the ensemble ------------------------------------------------------------------------------------------
def test_fits_linear_system(fitted):
    model, stats, _ = fitted
    obs, act, next_obs, rewards = linear_system(3000)
    delta_var = float(np.concatenate([next_obs - obs, rewards[:, None]], 1).var(0).mean())
    assert stats["holdout_size"] == min(int(0.2 * 3000) + 1, 1000) == 601 and stats["train_size"] == 2399
    assert stats["epochs"] == 30
    for i in stats["elites"]:
        assert stats["holdout_mse"][i] < 0.01 * delta_var
    # fresh points from the same range
    obs, act, next_obs, rewards = linear_system(500, seed=7)
    pred_next, pred_r = model.predict(obs, act, member="mean")
    assert pred_next.shape == (500, S) and pred_r.shape == (500,)
    assert ((pred_next.numpy() - next_obs) ** 2).mean() < 0.01 * delta_var
    assert ((pred_r.numpy() - rewards) ** 2).mean() < 0.01 * delta_var
    per_elite, per_elite_r = model.predict(obs, act)
    assert per_elite.shape == (3, 500, S) and per_elite_r.shape == (3, 500)
    assert torch.allclose(per_elite.mean(0), pred_next)
    one, one_r = model.predict(obs, act, member=stats["elites"][1])
    assert torch.equal(one, per_elite[1]) and torch.equal(one_r, per_elite_r[1])
    mean, logstd = model(obs, act)
    assert mean.shape == logstd.shape == (4, 500, S + 1)
    assert (logstd <= model.max_logstd).all() and (logstd >= model.min_logstd).all()


def test_disagreement_grows_off_data(fitted):
    model = fitted[0]
    obs, act, _, _ = linear_system(1000)
    near = model.disagreement(obs, act)
    far = model.disagreement(10 * obs, 10 * act)
    assert near.shape == (1000,) and (near >= 0).all()
    assert far.mean() > 10 * near.mean()
    # by hand: max over elites of the distance to the elites' average next state
    per_elite, _ = model.predict(obs[:50], act[:50])
    by_hand = (per_elite - per_elite.mean(0)).norm(dim=-1).max(0).values
    assert torch.allclose(near[:50], by_hand, atol=1e-6)


def test_elites_are_best_holdout_with_best_weights_restored(fitted):
    model, stats, epochs = fitted
    mse = np.array(stats["holdout_mse"])
    assert stats["elites"] == model.elites == list(np.argsort(mse, kind="stable")[:3])
    assert len(epochs) == 30
    per_epoch = np.array([e["holdout_mse"] for e in epochs])
    np.testing.assert_allclose(per_epoch.min(0), mse, rtol=0)
    assert epochs[-1]["lr"] == pytest.approx(1e-3 * 0.99 ** 29)
    rows = holdout_rows(0, 3000)
    held = [a[rows] for a in linear_system(3000)]
    for i in range(4):
        assert member_mse(model, i, *held) == pytest.approx(mse[i], rel=1e-4)


def test_early_stopping():
    """Noisy targets plateau; the stop epoch must be the first where more than 5 epochs in a row brought no
    member's best holdout MSE down by more than 1 % of its last recorded best (recomputed from the log)."""
    obs, act, next_obs, rewards = linear_system(1000)
    next_obs = next_obs + np.random.default_rng(3).normal(0, 0.3, next_obs.shape).astype(np.float32)
    log = []
    model = GaussianEnsemble(S, A, replace(SMALL, max_epochs=200))
    stats = model.fit(obs, act, next_obs, rewards, torch.Generator().manual_seed(0), log=log.append)
    assert 10 < stats["epochs"] < 200 and len(log) == stats["epochs"]
    best, recorded, stale, stop = [np.inf] * 4, [1e10] * 4, 0, None
    for epoch, entry in enumerate(log, start=1):
        best = list(np.minimum(best, entry["holdout_mse"]))
        updated = False
        for i in range(4):
            if (recorded[i] - best[i]) / recorded[i] > 0.01:
                recorded[i], updated = best[i], True
        stale = 0 if updated else stale + 1
        if stale > 5:
            stop = epoch
            break
    assert stop == stats["epochs"]
    assert stats["holdout_mse"] == best
    # each member carries its best-holdout weights, not its last ones (which are worse here for some member)
    assert any(entry > b for entry, b in zip(log[-1]["holdout_mse"], best))
    held = [a[holdout_rows(0, 1000)] for a in (obs, act, next_obs, rewards)]
    for i in range(4):
        assert member_mse(model, i, *held) == pytest.approx(best[i], rel=1e-4)


def test_holdout_rows_stay_out_of_training():
    """One epoch (so the kept weights are the trained ones) on data whose holdout targets differ: the default
    trains bit-identically; `holdout_leak` (the authors' indexing of the whole array) does not."""
    obs, act, next_obs, rewards = linear_system(1000)
    poisoned = rewards.copy()
    poisoned[holdout_rows(0, 1000)] = 100.0
    for leak in (False, True):
        weights = []
        for r in (rewards, poisoned):
            model = GaussianEnsemble(S, A, replace(SMALL, max_epochs=1, holdout_leak=leak))
            model.fit(obs, act, next_obs, r, torch.Generator().manual_seed(0))
            weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert torch.equal(weights[0], weights[1]) is (not leak)


def test_initialisation():
    """The authors' init: weights N(0, 1 / (2 sqrt(fan_in))) truncated at +-2, zero biases, bounds 1 and -5."""
    model = GaussianEnsemble(S, A, EnsembleConfig(members=7, hidden=(200, 200)))
    model.reset_parameters(torch.Generator().manual_seed(0))
    for layer in model.linears():
        fan_in = layer.weight.shape[1]
        assert layer.weight.std().item() == pytest.approx(1 / (2 * fan_in ** 0.5), rel=0.03)
        assert layer.weight.abs().max() <= 2 and (layer.bias == 0).all()
    assert (model.max_logstd == 1).all() and (model.min_logstd == -5).all()
    assert [layer.weight.shape[0] for layer in model.linears()] == [7, 7, 7]
    swish = [m for m in model.net.layers if not isinstance(m, type(model.linears()[0]))]
    z = torch.linspace(-4, 4, 9)
    assert len(swish) == 2 and all(torch.allclose(m(z), z * torch.sigmoid(z)) for m in swish)
    assert [tuple(layer.weight.shape[1:]) for layer in model.linears()] == [(S + A, 200), (200, 200), (200, 8)]


def test_training_loss_formula():
    """Gaussian NLL (torch.distributions.Normal, as the authors) averaged, + 0.01 (mean max - mean min)."""
    model = GaussianEnsemble(S, A, SMALL)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.max_logstd.copy_(torch.rand(S + 1, generator=gen))
        model.min_logstd.copy_(-3 - torch.rand(S + 1, generator=gen))
    x, target = torch.randn(4, 16, S + A, generator=gen), torch.randn(4, 16, S + 1, generator=gen)
    mean, logstd = model._net(x)
    expected = -torch.distributions.Normal(mean, logstd.exp()).log_prob(target).mean()
    expected = expected + 0.01 * model.max_logstd.mean() - 0.01 * model.min_logstd.mean()
    assert torch.allclose(model.training_loss(x, target), expected, rtol=1e-6)
    # the soft clamp: max - softplus(max - raw), then min + softplus(. - min)
    h = x
    for layer in model.net.layers:
        h = layer(h)
    raw = h[..., S + 1:]
    clamped = model.max_logstd - torch.nn.functional.softplus(model.max_logstd - raw)
    clamped = model.min_logstd + torch.nn.functional.softplus(clamped - model.min_logstd)
    assert torch.allclose(logstd, clamped)
    assert torch.allclose(mean, h[..., :S + 1])


def test_determinism():
    cfg = replace(SMALL, max_epochs=3)
    a, _ = fit(cfg, seed=1, n=800)
    b, _ = fit(cfg, seed=1, n=800)
    c, _ = fit(cfg, seed=2, n=800)
    for key, value in a.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b.state_dict()[key]), key
    obs, act, _, _ = linear_system(64, seed=3)
    assert torch.equal(a.predict(obs, act)[0], b.predict(obs, act)[0])
    assert not torch.equal(a.predict(obs, act, member=0)[0], c.predict(obs, act, member=0)[0])
    state = torch.random.get_rng_state()
    fit(cfg, seed=1, n=800)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is never touched


def test_sample_and_chunking(fitted):
    model = fitted[0]
    obs, act, _, _ = linear_system(300, seed=4)
    per_elite, per_elite_r = model.predict(obs, act)
    nxt, r = model.sample(obs, act, torch.Generator().manual_seed(5), deterministic=True)
    assert nxt.shape == (300, S) and r.shape == (300,)
    match = (per_elite == nxt).all(-1) & (per_elite_r == r)  # each row is exactly one elite's mean
    assert (match.sum(0) >= 1).all() and match.any(1).sum() == 3  # and all three elites get used
    s1 = model.sample(obs, act, torch.Generator().manual_seed(6))
    s2 = model.sample(obs, act, torch.Generator().manual_seed(6))
    assert torch.equal(s1[0], s2[0]) and torch.equal(s1[1], s2[1])
    assert not torch.equal(s1[0], nxt)
    old = model.cfg.chunk
    try:
        model.cfg.chunk = 7
        small = model.predict(obs, act), model.disagreement(obs, act)
    finally:
        model.cfg.chunk = old
    assert torch.allclose(small[0][0], per_elite, atol=1e-6)
    assert torch.allclose(small[1], model.disagreement(obs, act), atol=1e-6)


def test_save_load_round_trip(fitted):
    model = fitted[0]
    buf = io.BytesIO()
    torch.save(model.to_state(), buf)
    buf.seek(0)
    again = GaussianEnsemble.from_state(torch.load(buf, weights_only=False))
    assert again.elites == model.elites and again.cfg == model.cfg
    assert "_extra_state" in model.state_dict() and model.state_dict()["_extra_state"]["elites"] == model.elites
    obs, act, _, _ = linear_system(200, seed=9)
    for member in ("elites", "mean", 2):
        for x, y in zip(model.predict(obs, act, member), again.predict(obs, act, member)):
            assert torch.equal(x, y)
    assert torch.equal(model.disagreement(obs, act), again.disagreement(obs, act))
    other = GaussianEnsemble(S, A, replace(SMALL, members=5))
    with pytest.raises(Exception):
        other.load_state_dict(model.state_dict())
    with pytest.raises(RuntimeError, match="fit"):
        GaussianEnsemble(S, A, SMALL).predict(obs, act)


def test_normalize_inputs_option():
    cfg = replace(SMALL, max_epochs=2, normalize_inputs=True)
    model, _ = fit(cfg, n=500)
    assert model.input_norm is not None
    obs, act, _, _ = linear_system(500)
    x = model.input_norm.transform(np.concatenate([obs, act], 1))
    assert np.abs(x.mean(0)).max() < 0.1  # fitted on the training rows, so close to (not exactly) 0
    again = GaussianEnsemble.from_state(model.to_state())
    assert torch.equal(model.predict(obs, act)[0], again.predict(obs, act)[0])


def test_holdout_formula():
    cfg = EnsembleConfig()
    assert [holdout_size(n, cfg) for n in (2, 10, 4999, 5000, 100_000)] == [1, 3, 1000, 1000, 1000]
    assert holdout_size(4000, cfg) == 801


@pytest.mark.parametrize("field, value", [
    ("members", 0), ("elites", 8), ("elites", 0), ("hidden", ()), ("hidden", (200, 0)), ("activation", "tanh"),
    ("lr", 0.0), ("lr", float("nan")), ("weight_decay", -1e-5), ("lr_decay", 1.5), ("lr_decay", 0.0),
    ("batch_size", 0), ("max_epochs", 0), ("max_epochs", 2.5), ("holdout_ratio", 1.0), ("holdout_max", 0),
    ("patience", -1), ("min_improvement", -0.1), ("min_logstd_init", 2.0), ("logstd_bound_coef", -1.0),
    ("chunk", 0), ("normalize_inputs", 1), ("members", True),
])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"EnsembleConfig\.{field} "):
        replace(EnsembleConfig(), **{field: value}).validate()
    with pytest.raises(ValueError, match=field):
        GaussianEnsemble(S, A, replace(EnsembleConfig(), **{field: value}))
    EnsembleConfig(max_epochs=5).validate()


# -- ZScore ------------------------------------------------------------------------------------------------
def zscore_data():
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -20.0, 300.0, 0.0], [0.5, 3.0, 40.0, 1.0], (2000, 4)).astype(np.float32)
    x[:, 3] = rng.random(2000) < 0.1  # a terminal flag
    return x


def test_zscore():
    x = zscore_data()
    norm = ZScore.fit(x, exclude=[3])
    y = norm.transform(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[:, :3].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(y[:, :3].std(0, ddof=1), 1, atol=1e-4)
    assert np.array_equal(y[:, 3], x[:, 3])  # excluded: untouched
    assert norm.mean[3] == 0 and norm.scale[3] == 1
    np.testing.assert_allclose(norm.scale[:3], x[:, :3].astype(np.float64).std(0, ddof=1) + 1e-5)
    np.testing.assert_allclose(norm.inverse(y), x, rtol=1e-6, atol=1e-5)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(norm.inverse(norm.transform(x64)), x64, rtol=1e-13, atol=1e-12)
    t = norm.transform(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert np.array_equal(t.numpy(), y)
    assert torch.equal(norm.inverse(t), torch.from_numpy(norm.inverse(y)))
    again = ZScore.from_state(norm.to_state())
    assert np.array_equal(again.transform(x), y)
    with pytest.raises(ValueError):
        norm.transform(x[:, :3])


# -- EmpiricalCDF ------------------------------------------------------------------------------------------
def cdf_data():
    rng = np.random.default_rng(1)
    x = np.stack([rng.normal(0, 1, 3000), np.round(rng.exponential(2.0, 3000), 1), np.full(3000, 4.0)], 1)
    return x  # float64: a continuous column, one with many ties, a constant one


def test_cdf_known_answer():
    cdf = EmpiricalCDF.fit(np.array([[0.0], [1.0], [1.0], [3.0]]))  # c = 0.25, 0.75, 1.0 at 0, 1, 3
    np.testing.assert_allclose(cdf.transform(np.array([[0.0], [1.0], [2.0], [3.0], [-5.0], [9.0]]))[:, 0],
                               [-0.5, 0.5, 0.75, 1.0, -0.5, 1.0])
    np.testing.assert_allclose(cdf.inverse(np.array([[-1.0], [-0.5], [0.0], [0.75], [1.0], [3.0]]))[:, 0],
                               [0.0, 0.0, 0.5, 2.0, 3.0, 3.0])


def test_cdf_round_trip_and_range():
    x = cdf_data()
    cdf = EmpiricalCDF.fit(x)
    y = cdf.transform(x)
    assert y.dtype == np.float64 and y.shape == x.shape
    assert (y[:, :2] >= -1).all() and (y[:, :2] <= 1).all()
    np.testing.assert_allclose(cdf.inverse(y), x, rtol=0, atol=1e-12)
    assert np.array_equal(y[:, 2], x[:, 2])  # constant column: passed through, as the authors do
    assert y[:, 0].max() == 1.0 and y[:, 1].max() == 1.0
    # the continuous column is roughly uniform on [-1, 1]
    np.testing.assert_allclose(np.quantile(y[:, 0], [0.1, 0.5, 0.9]), [-0.8, 0.0, 0.8], atol=0.02)
    # float32 data (the harness's dtype): output float32, round trip within float32 resolution of y
    x32 = x.astype(np.float32)
    cdf32 = EmpiricalCDF.fit(x32)
    y32 = cdf32.transform(x32)
    assert y32.dtype == np.float32
    gap = np.abs(np.diff(np.sort(x32[:, 0]))).max()
    np.testing.assert_allclose(cdf32.inverse(y32)[:, 0], x32[:, 0], atol=float(gap))
    t = cdf.transform(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), y)
    again = EmpiricalCDF.from_state(cdf.to_state())
    assert np.array_equal(again.transform(x), y)


def test_cdf_clipping_and_monotone():
    x = cdf_data()
    cdf = EmpiricalCDF.fit(x)
    lo, hi = x.min(0), x.max(0)
    below, above = cdf.transform(lo - 10.0), cdf.transform(hi + 10.0)
    np.testing.assert_array_equal(below[:2], cdf.transform(lo)[:2])
    assert below[0] == pytest.approx(-1 + 2 / 3000)  # one sample at the minimum: 2 c_1 - 1
    np.testing.assert_array_equal(above[:2], [1.0, 1.0])
    np.testing.assert_array_equal(cdf.inverse(np.full(3, -1.0))[:2], lo[:2])
    np.testing.assert_array_equal(cdf.inverse(np.full(3, -7.0))[:2], lo[:2])
    np.testing.assert_array_equal(cdf.inverse(np.full(3, 1.0))[:2], hi[:2])
    np.testing.assert_array_equal(cdf.inverse(np.full(3, 5.0))[:2], hi[:2])
    grid = np.linspace(lo - 1, hi + 1, 5001)
    assert (np.diff(cdf.transform(grid)[:, :2], axis=0) >= 0).all()
    assert (np.diff(cdf.inverse(np.linspace(-1.5, 1.5, 5001)[:, None].repeat(3, 1))[:, :2], axis=0) >= 0).all()
    distinct = np.unique(x[:, 1])
    assert (np.diff(cdf.transform(np.stack([distinct] * 3, 1))[:, 1]) > 0).all()
