"""ASTRO's dynamics model (methods/astro/dynamics.py): config checks, rollout shapes and input checks, determinism
and the global RNG, the state round trip, a trained DiT on a known linear system against an untrained one and the
do-nothing baseline, the ensemble's differentiable rollout, and `rollout_error` against the toy maze's simulator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.dataset import Dataset, DatasetMeta, SpaceSpec
from methods.astro.dynamics import (
    DynamicsConfig,
    DynamicsModel,
    displacement_scale,
    rollout_error,
    steps_left,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread (tests/conftest.py)

# s' = A s + B a: a slow rotation with decay, actions uniform in [-1, 1]^2
A = np.array([[0.98, 0.05], [-0.05, 0.98]])
B = np.array([[0.1, 0.0], [0.02, 0.1]])
EPISODES, STEPS = 40, 50
DIT = DynamicsConfig(horizon=8, width=32, depth=2, heads=2, diffusion_steps=5, train_steps=400, batch_size=128,
                     lr=1e-3, log_every=100)
TINY = replace(DIT, width=16, heads=2, depth=1, train_steps=20, batch_size=32, log_every=10)
ENSEMBLE = DynamicsConfig(kind="ensemble", horizon=15, members=3, elites=2, ensemble_width=32, ensemble_layers=2,
                          ensemble_epochs=5)


def linear_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, (EPISODES, 2))
    act = rng.uniform(-1, 1, (EPISODES, STEPS, 2))
    states = [s]
    for t in range(STEPS):
        states.append(states[-1] @ A.T + act[:, t] @ B.T)
    states = np.stack(states, axis=1)  # (E, STEPS + 1, 2)
    n = EPISODES * STEPS
    ends = np.zeros(n, bool)
    ends[STEPS - 1::STEPS] = True
    meta = DatasetMeta(name="linear", source="test", observation_space=SpaceSpec(shape=(2,)),
                       action_space=SpaceSpec(shape=(2,), low=[-1, -1], high=[1, 1]))
    return Dataset.from_episodes_arrays(
        observations=states[:, :-1].reshape(n, 2), actions=act.reshape(n, 2), rewards=np.zeros(n),
        next_observations=states[:, 1:].reshape(n, 2), terminals=np.zeros(n, bool), episode_ends=ends,
        meta=meta).validate()


@pytest.fixture(scope="module")
def linear():
    return linear_dataset()


@pytest.fixture(scope="module")
def fitted_dit(linear, one_torch_thread):
    model = DynamicsModel(DIT, 2, 2)
    calls = []
    info = model.fit(linear, torch.Generator().manual_seed(0), progress=lambda done, total: calls.append(done))
    assert info["steps"] == DIT.train_steps and np.isfinite(info["loss"])
    assert calls == [100, 200, 300, 400]
    return model


@pytest.fixture(scope="module")
def fitted_ensemble(linear, one_torch_thread):
    model = DynamicsModel(ENSEMBLE, 2, 2)
    info = model.fit(linear, torch.Generator().manual_seed(0))
    assert info["kind"] == "ensemble" and len(info["elites"]) == ENSEMBLE.elites
    return model


def windows(ds: Dataset, length: int, count: int, seed: int = 1):
    """`count` start rows with >= `length` steps left, their states, the next `length` actions and the true
    next `length` states."""
    rows = np.flatnonzero(steps_left(ds.episode_offsets) >= length)
    t = np.random.default_rng(seed).choice(rows, count, replace=False)
    idx = t[:, None] + np.arange(length)
    return ds.observations[t], ds.actions[idx], ds.next_observations[idx]


# -- config and helpers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("kind", "mlp"), ("horizon", 0), ("width", 30), ("heads", 0),
                                          ("diffusion_steps", 0), ("train_steps", -1), ("lr", 0.0),
                                          ("sample_noise", -0.5), ("elites", 8), ("batch_size", 1.5),
                                          ("log_every", 0), ("ensemble_layers", 0),
                                          ("clip_denoised", 0.0)])
def test_bad_config_raises_naming_the_field(field, value):
    cfg = replace(DynamicsConfig(), **{field: value})
    with pytest.raises(ValueError, match=rf"DynamicsConfig\.{field} "):
        cfg.validate()
    with pytest.raises(ValueError, match=rf"DynamicsConfig\.{field} "):
        DynamicsModel(cfg, 2, 2)
    assert DynamicsConfig().validate() == DynamicsConfig()


def test_steps_left_and_displacement_scale():
    offsets = np.array([0, 3, 4])  # episodes of 3 and 1 rows
    assert steps_left(offsets).tolist() == [3, 2, 1, 1]
    obs = np.array([[0.0], [1.0], [3.0], [10.0]])
    nxt = np.array([[1.0], [3.0], [6.0], [10.0]])
    table = displacement_scale(obs, nxt, steps_left(offsets), 4)
    # j = 1: changes 1, 2, 3, 0; j = 2: rows 0, 1: 3, 5; j = 3: row 0: 6 (std 0 -> floor); j = 4: no row, copied
    assert table[:, 0] == pytest.approx([np.std([1, 2, 3, 0]), 1.0, 1e-6, 1e-6])


# -- rollouts: shapes, input checks, determinism, state round trip ---------------------------------------------
def test_rollout_shapes_and_input_checks(fitted_dit, linear):
    with pytest.raises(RuntimeError):
        DynamicsModel(DIT, 2, 2).rollout(np.zeros((1, 2)), np.zeros((1, 1, 2)), torch.Generator())
    s0, act, _ = windows(linear, DIT.horizon, 6)
    gen = torch.Generator().manual_seed(0)
    for length in (1, 3, DIT.horizon):
        out = fitted_dit.rollout(s0, act[:, :length], gen)
        assert out.shape == (6, length, 2) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert fitted_dit.rollout(s0[:0], act[:0, :2], gen).shape == (0, 2, 2)
    too_long = np.zeros((6, DIT.horizon + 1, 2), np.float32)
    with pytest.raises(ValueError, match="horizon"):
        fitted_dit.rollout(s0, too_long, gen)
    with pytest.raises(ValueError):
        fitted_dit.rollout(s0, act[:, :0], gen)
    with pytest.raises(ValueError):
        fitted_dit.rollout(s0[:, :1], act, gen)
    with pytest.raises(ValueError):
        fitted_dit.rollout(s0, act[:5], gen)


def test_fit_and_rollout_are_deterministic_and_leave_the_global_rng_alone(linear):
    s0, act, _ = windows(linear, 5, 16)
    before = torch.get_rng_state()
    weights, rollouts = [], []
    for _ in range(2):
        model = DynamicsModel(TINY, 2, 2)
        model.fit(linear, torch.Generator().manual_seed(5))
        weights.append(model.to_state()["dit"])
        rollouts.append(model.rollout(s0, act, torch.Generator().manual_seed(9)))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert torch.equal(rollouts[0], rollouts[1])
    assert not torch.equal(model.rollout(s0, act, torch.Generator().manual_seed(10)), rollouts[0])
    other = DynamicsModel(TINY, 2, 2)
    other.fit(linear, torch.Generator().manual_seed(6))
    assert not torch.equal(other.to_state()["dit"]["out.weight"], weights[0]["out.weight"])


def test_state_round_trip(fitted_dit, fitted_ensemble, linear):
    s0, act, _ = windows(linear, 5, 16)
    for model in (fitted_dit, fitted_ensemble):
        back = DynamicsModel.from_state(model.to_state(), "cpu")
        assert back.cfg == model.cfg
        assert torch.equal(back.rollout(s0, act, torch.Generator().manual_seed(3)),
                           model.rollout(s0, act, torch.Generator().manual_seed(3)))


# -- known answers ---------------------------------------------------------------------------------------------
def test_trained_dit_beats_the_untrained_model_and_standing_still(fitted_dit, linear):
    s0, act, truth = windows(linear, 5, 256)
    untrained = DynamicsModel(replace(DIT, train_steps=0), 2, 2)
    untrained.fit(linear, torch.Generator().manual_seed(0))

    def error(model):
        pred = model.rollout(s0, act, torch.Generator().manual_seed(4)).numpy()
        return np.linalg.norm(pred[:, -1] - truth[:, -1], axis=1).mean()

    trained, fresh = error(fitted_dit), error(untrained)
    static = np.linalg.norm(s0 - truth[:, -1], axis=1).mean()
    # measured 0.021 against 0.218 (standing still) and 2.2 (untrained: a zero epsilon, x0_hat at the clip)
    assert trained < 0.4 * static and trained < 0.1 * fresh, (trained, static, fresh)


def test_ensemble_rollout_grad(fitted_ensemble, linear):
    s0, act, _ = windows(linear, 10, 64)
    gen = torch.Generator().manual_seed(0)
    out = fitted_ensemble.rollout(s0, act, gen)
    first, _ = fitted_ensemble.ensemble.predict(s0, act[:, 0], member="mean")
    assert torch.allclose(out[:, 0], first, atol=1e-6)
    actions = torch.as_tensor(act).requires_grad_(True)
    with_grad = fitted_ensemble.rollout_grad(torch.as_tensor(s0), actions)
    assert with_grad.requires_grad and torch.allclose(with_grad.detach(), out, atol=1e-6)
    with_grad[:, -1].pow(2).sum().backward()
    assert torch.isfinite(actions.grad).all() and (actions.grad.abs().sum(dim=(0, 2)) > 0).all()


def test_dit_rollout_grad_is_the_reparameterised_sample(fitted_dit, linear):
    """Under the same generator state the DiT's differentiable rollout is `rollout` exactly, and its gradient is
    the derivative of that fixed-noise sample: checked against central differences along a random direction."""
    s0, act, _ = windows(linear, 6, 16)
    s0, act = torch.as_tensor(s0, dtype=torch.float32), torch.as_tensor(act, dtype=torch.float32)
    with pytest.raises(ValueError, match="generator"):
        fitted_dit.rollout_grad(s0, act)
    plain = fitted_dit.rollout(s0, act, torch.Generator().manual_seed(3))
    actions = act.clone().requires_grad_(True)
    out = fitted_dit.rollout_grad(s0, actions, torch.Generator().manual_seed(3))
    assert out.requires_grad and torch.equal(out.detach(), plain)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    (out * weight).sum().backward()
    grad = actions.grad
    assert torch.isfinite(grad).all() and (grad.abs().sum(dim=(0, 2)) > 0).all()

    def f(a):
        with torch.no_grad():
            return float((fitted_dit.rollout(s0, a, torch.Generator().manual_seed(3)).double() * weight).sum())

    direction = torch.randn(act.shape, generator=torch.Generator().manual_seed(5))
    eps = 1e-2
    numeric = (f(act + eps * direction) - f(act - eps * direction)) / (2 * eps)
    analytic = float((grad.double() * direction).sum())
    assert abs(numeric - analytic) <= 0.05 * abs(analytic) + 1e-3, (numeric, analytic)


# -- rollout_error against the true simulator ------------------------------------------------------------------
def test_rollout_error_on_the_toy_maze(toy_task1):
    from bench.dvr import simulator_for

    model = DynamicsModel(replace(ENSEMBLE, ensemble_epochs=40), 2, 2)
    model.fit(toy_task1, torch.Generator().manual_seed(0))
    sim = simulator_for(toy_task1)
    out = rollout_error(model, toy_task1, sim, horizons=(5, 10, 15), n=64, generator=torch.Generator().manual_seed(1))
    assert out["rows"] == 64 and sorted(out["horizons"]) == [5, 10, 15]
    for fig in out["horizons"].values():
        assert all(np.isfinite(v) for v in fig.values()), fig
        assert fig["data_l2"] < 1e-3 and fig["data_scaled"] < 1e-2  # the data are the simulator's own steps
        assert fig["static_scaled"] > 1.0  # h steps of a moving point: several typical one-step changes
    assert out["horizons"][15]["static_l2"] > out["horizons"][5]["static_l2"]
    assert out["horizons"][5]["model_scaled"] < 0.5 * out["horizons"][5]["static_scaled"]  # even 5 epochs learn
    again = rollout_error(model, toy_task1, sim, n=64, generator=torch.Generator().manual_seed(1))
    assert again["horizons"] == out["horizons"]
    with pytest.raises(ValueError, match="horizon"):
        rollout_error(model, toy_task1, sim, horizons=(5, 16))
