"""Contract testers, d3rlpy `algo_tester` style: every registered trainer and augmenter passes the same checks,
so a new one is tested the moment it is registered."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from algos import TRAINERS
from algos.base import resolve
from methods import AUGMENTERS


@pytest.fixture
def toy(toy_file):
    from bench import data

    return data.load("toy-maze", 1)


def torch_modules(trainer) -> dict[str, torch.nn.Module]:
    """The trainer's networks: d3rlpy's modules, or the torch modules a harness trainer holds."""
    owner = trainer.algo.impl.modules if hasattr(trainer, "algo") else trainer
    return {k: m for k, m in vars(owner).items() if isinstance(m, torch.nn.Module)}


def weights(trainer) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, m in torch_modules(trainer).items()
            for k, v in m.state_dict().items()}


def actions(trainer, obs) -> np.ndarray:
    trainer.reset_episode()
    return np.stack([trainer.act(o) for o in obs])


# ---------------------------------------------------------------------------------------------- trainers
@pytest.mark.parametrize("name", TRAINERS.names())
def test_trainer_contract(name, toy, tmp_path):
    from tests.test_run import final_actions

    cls = TRAINERS.get(name)
    assert "cpu-smoke" in cls.presets, f"{name}: every trainer ships a tiny `cpu-smoke` preset"
    cfg = resolve(cls.config_class, cls.presets, {"preset": "cpu-smoke"}, name)
    assert cls.config_class.from_dict(json.loads(json.dumps(cfg.to_dict()))).to_dict() == cfg.to_dict()

    def fresh():
        t = cls(cfg, seed=0, device="cpu:0")
        t.build(toy)
        return t

    obs = np.asarray(toy.observations[:8])
    # Exact gradient steps, in chunks.
    whole = fresh()
    whole.train(3)
    whole.train(4)
    assert whole.grad_steps == 7
    # Resume identity: a checkpoint at step 3 (with the sampler's and torch's random state, as a run saves
    # them) continued for 4 steps equals the uninterrupted 7.
    first = fresh()
    first.train(3)
    first.save_checkpoint(tmp_path / "ckpt")
    sampler_state, torch_state = first.sampler.state(), torch.get_rng_state()
    resumed = fresh()
    resumed.load_checkpoint(tmp_path / "ckpt", 3)
    resumed.sampler.set_state(sampler_state)
    torch.set_rng_state(torch_state)
    resumed.train(4)
    assert resumed.grad_steps == 7
    w1, w2 = weights(whole), weights(resumed)
    assert w1.keys() == w2.keys() and len(w1) > 0
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=0, atol=0, msg=f"{name}: {k} differs after a resume")
    # Device placement: networks and batches on the trainer's device.
    devices = {p.device for m in torch_modules(whole).values() for p in m.parameters()}
    assert devices == {torch.device("cpu")}
    assert whole.sampler.device == "cpu:0"
    # Policy save/load: the saved policy acts as the trained one.
    path = tmp_path / whole.policy_filename
    whole.save(path)
    assert path.stat().st_size > 0
    if name == "dt":
        whole.target_return = 1.0  # the return-to-go final_actions conditions on
    if name != "drol":  # DROL acts with a fresh random latent per step; its file is checked with z = 0 below
        np.testing.assert_allclose(final_actions(name, tmp_path, obs), actions(whole, obs), rtol=1e-5, atol=1e-6)
    else:
        zero = cls(resolve(cls.config_class, cls.presets, {"preset": "cpu-smoke", "eval_latent": "zero"}, name),
                   seed=0, device="cpu:0")
        zero.build(toy)
        zero.actor.load_state_dict(whole.actor.state_dict())
        saved = np.clip(final_actions(name, tmp_path, obs), -1.0, 1.0)  # the file holds the actor; f clips
        np.testing.assert_allclose(saved, actions(zero, obs), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- augmenters
@pytest.mark.parametrize("name", AUGMENTERS.names())
def test_augmenter_contract(name, toy, tmp_path):
    from bench.augment import augment, cache_path

    cls = AUGMENTERS.get(name)
    cfg = _small(cls)
    assert cls.config_class.from_dict(json.loads(json.dumps(cfg.to_dict()))).to_dict() == cfg.to_dict()
    generated, key, from_cache = augment(toy, name, cfg, seed=3)
    if cls.output == "none":
        assert generated is None and not from_cache
        return
    assert generated.meta.kind == cls.output  # the output kind it declares
    generated.validate()
    assert generated.meta.origins[:1] == ["original"] and name in generated.meta.origins
    assert np.all(generated.origin == generated.meta.origins.index(name))  # provenance names the augmenter
    src = np.asarray(generated.source_episodes)
    real = src[src >= 0]
    # ... and real source episodes, or -1 where a model of the whole dataset (SER) drew the step
    assert (src >= -1).all() and (not len(real) or real.max() < toy.n_episodes)
    assert generated.meta.extra.get("parent_hash") == toy.meta.content_hash
    again, key2, cached = augment(toy, name, cfg, seed=3)  # cache round trip
    assert cached and key2 == key and cache_path(key).exists()
    assert again.meta.content_hash == generated.meta.content_hash
    assert isinstance(again.observations, np.memmap)
    fresh = cls(cfg, seed=3)  # same seed, same content, built outside the cache
    fresh.fit(toy)
    assert fresh.generate().meta.content_hash == generated.meta.content_hash


@pytest.mark.parametrize("name", AUGMENTERS.names())
def test_augmenter_fitted_state_round_trip_and_sampling_reuses_the_fit(name, toy, tmp_path):
    """A model put back from `fitted_state()` samples exactly as the fitted one; changing only a sample field
    (or the sample seed) reuses the cached fit and changes the samples."""
    from dataclasses import replace

    from bench.augment import augment, fitted_path, fit_key

    cls = AUGMENTERS.get(name)
    if cls.output == "none":
        return
    cfg = _small(cls)
    fitted = cls(cfg, seed=1)
    fitted.fit(toy)
    put_back = cls(cfg, seed=1)
    put_back.load_fitted(toy, fitted.fitted_state())
    for a in (fitted, put_back):
        a.begin_sampling(9)
    assert fitted.generate().meta.content_hash == put_back.generate().meta.content_hash
    first, first_key, _ = augment(toy, name, cfg, seed=1)
    model = fitted_path(fit_key(toy, name, cfg.to_dict(), 1, cls.sample_fields))
    assert model.exists()
    stamp = model.stat().st_mtime_ns
    variants = [replace(cfg, sample_seed=7)] + [replace(cfg, **{f: _other(getattr(cfg, f))}) for f in cls.sample_fields
                                                if _other(getattr(cfg, f)) != getattr(cfg, f)]  # numbers, booleans
    for variant in variants:
        other, key, cached = augment(toy, name, variant, seed=1)
        assert not cached and key != first_key
        changed = [f for f in cls.sample_fields if getattr(variant, f) != getattr(cfg, f)]
        if not set(changed) <= set(cls.limit_fields):  # a cap (a budget) need not bind at a test's size
            assert other is None or other.meta.content_hash != first.meta.content_hash, changed  # None: none made
    assert model.stat().st_mtime_ns == stamp  # never fitted again


def _small(cls):
    """The augmenter's `cpu-smoke` preset where it has one (models sized for tests), else its defaults."""
    return cls.resolve_config({"preset": "cpu-smoke"}) if "cpu-smoke" in cls.presets else cls.config_class()


def _other(value):
    if isinstance(value, bool):
        return not value
    # floats shrink a hundredfold: a halved churn would still hit its cap of sqrt(2) - 1 and change nothing
    return value * 0.01 if isinstance(value, float) and value else (value + 1 if isinstance(value, int) else value)


SGD_MEAN = '''
class SgdMean(Augmenter):
    """Test augmenter: SGD towards the observation mean, from noisy minibatches, checkpointing as it goes."""
    name = "sgd-mean"
    config_class = AugmenterConfig
    output = "transitions"
    steps = 50

    def fit(self, dataset):
        self.data = dataset
        obs = np.asarray(dataset.observations)
        state = self.fit_checkpoint() or {"step": 0, "mu": np.zeros(obs.shape[1]), "rng": self.rng.bit_generator.state}
        self.resumed_from = state["step"]
        mu, self.rng.bit_generator.state = state["mu"], state["rng"]
        for step in range(state["step"], self.steps):
            mu = mu + 0.1 * (obs[self.rng.integers(0, len(obs), 32)].mean(0) - mu)
            if (step + 1) % 10 == 0:
                self.save_fit_checkpoint({"step": step + 1, "mu": mu, "rng": self.rng.bit_generator.state})
            self.report(step + 1, self.steps)
        self.mu = mu

    def fitted_state(self):
        return {"mu": self.mu}

    def load_fitted(self, dataset, state):
        self.data, self.mu = dataset, state["mu"]

    def generate(self):
        rows = self.rng.integers(0, len(self.data), 8)
        obs = np.repeat(self.mu[None].astype(np.float32), 8, 0)
        return self.transitions(self.data, rows, obs, obs)
'''


def test_an_interrupted_fit_resumes_from_its_checkpoint_to_the_same_model(toy, tmp_path, monkeypatch):
    import torch

    from bench.augment import augment, fit_key, fitted_path
    from methods.base import Augmenter, AugmenterConfig

    scope = {"Augmenter": Augmenter, "AugmenterConfig": AugmenterConfig, "np": np}
    exec(SGD_MEAN, scope)
    cls = scope["SgdMean"]
    if "sgd-mean" not in AUGMENTERS.names():
        AUGMENTERS.register(cls)
    cfg = AugmenterConfig()
    reference = cls(cfg, seed=2)
    reference.fit(toy)  # uninterrupted, no checkpoints

    class Killed(Exception):
        pass

    def kill_at_25(done, total):
        if done == 25:
            raise Killed()

    with pytest.raises(Killed):
        augment(toy, "sgd-mean", cfg, seed=2, progress=kill_at_25)
    model = fitted_path(fit_key(toy, "sgd-mean", cfg.to_dict(), 2))
    assert not model.exists() and model.with_suffix(".partial.pt").exists()
    seen = []
    generated, _, cached = augment(toy, "sgd-mean", cfg, seed=2, progress=lambda d, t: seen.append(d))
    assert not cached and seen[0] == 21  # resumed after the step-20 checkpoint
    np.testing.assert_array_equal(torch.load(model, weights_only=False)["mu"], reference.mu)
    np.testing.assert_allclose(generated.observations[0], reference.mu.astype(np.float32))
    assert not model.with_suffix(".partial.pt").exists()


def _rejection_reasons(name: str):
    import importlib

    return getattr(importlib.import_module(AUGMENTERS.get(name).__module__), "REASONS", None)


@pytest.mark.parametrize("name", [n for n in AUGMENTERS.names() if _rejection_reasons(n)])
def test_stitching_augmenter_end_to_end_through_bench_run(name, toy_file, results):
    """A `bench run` with each augmenter that qualifies its stitches (its module names the rejection REASONS):
    stitches with their DVR and the acceptance record (every attempt accepted or rejected for one counted
    reason) in result.json."""
    from tests.test_cli import bench

    reasons = _rejection_reasons(name)
    env = {"AUGBENCH_CACHE": str(toy_file.parent.parent)}
    res = bench("run", "--dataset", "toy-maze", "--task", "1", "--algo", "iql", "--augmenter", name,
                "--aug-config", '{"preset": "cpu-smoke"}', "--steps", "10", "--eval-episodes", "1",
                "--device", "cpu:0", "--algo-config", '{"batch_size": 16}', env=env)
    assert res.returncode == 0, res.stderr
    result = json.loads(next(results.rglob("result.json")).read_text())
    aug = result["augmentation"]
    assert aug["kind"] == "trajectories" and aug["generated"] > 0
    assert aug["dvr"]["segments_violating_share"] is not None
    stats = aug["stats"]
    assert stats["accepted"] > 0 and stats["attempts"] == stats["accepted"] + sum(stats[r] for r in reasons)
