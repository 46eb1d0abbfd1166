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
    cfg = cls.config_class()
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
    assert len(real) and real.min() >= 0 and real.max() < toy.n_episodes  # ... and real source episodes
    assert generated.meta.extra.get("parent_hash") == toy.meta.content_hash
    again, key2, cached = augment(toy, name, cfg, seed=3)  # cache round trip
    assert cached and key2 == key and cache_path(key).exists()
    assert again.meta.content_hash == generated.meta.content_hash
    assert isinstance(again.observations, np.memmap)
    fresh = cls(cfg, seed=3)  # same seed, same content, built outside the cache
    fresh.fit(toy)
    assert fresh.generate().meta.content_hash == generated.meta.content_hash
