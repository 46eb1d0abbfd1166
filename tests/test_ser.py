"""SER (SynthER): the sample layout, normalisation, terminal thresholding, options, fit resume, and a run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import data
from bench.errors import BenchError
from methods import AUGMENTERS

SER = AUGMENTERS.get("ser")


@pytest.fixture
def toy(toy_file, monkeypatch):
    monkeypatch.setenv("AUGBENCH_CACHE", str(toy_file.parent.parent))
    return data.load("toy-maze", 1)


def smoke(**kw):
    return SER.resolve_config({"preset": "cpu-smoke", **kw})


def test_presets_resolve_and_unknown_ones_are_refused():
    assert smoke().width == 64 and SER.resolve_config({"preset": "w1024"}).width == 1024
    assert SER.resolve_config({}).width == 2048 and SER.resolve_config({}).train_steps == 100_000
    assert SER.resolve_config({"preset": "paper"}).to_dict() == SER.resolve_config({}).to_dict()
    with pytest.raises(BenchError, match="unknown preset 'huge'.*paper, w1024, cpu-smoke"):
        SER.resolve_config({"preset": "huge"})
    with pytest.raises(BenchError, match="'amp' must be 'off' or 'bf16'"):
        smoke(amp="fp8")


def test_samples_are_s_a_r_s2_terminal_with_timeouts_dropped(toy):
    aug = SER(smoke(), seed=0)
    x = aug._inputs(toy)
    keep = ~np.asarray(toy.timeouts)
    assert x.shape == (keep.sum(), 2 + 2 + 1 + 2 + 1)  # the authors drop the timeout steps (qlearning_dataset)
    np.testing.assert_array_equal(x[:, :2], toy.observations[keep])
    np.testing.assert_array_equal(x[:, 5:7], toy.next_observations[keep])
    np.testing.assert_array_equal(x[:, -1], toy.terminals[keep].astype(np.float32))
    assert SER(smoke(drop_timeouts=False), seed=0)._inputs(toy).shape[0] == len(toy)
    assert SER(smoke(model_terminals=False), seed=0)._inputs(toy).shape[1] == 7


def test_fit_normalises_all_but_the_terminal_and_samples_are_thresholded(toy):
    aug = SER(smoke(train_steps=10, num_samples=6, sample_batch=6), seed=0)
    aug.fit(toy)
    x = aug._inputs(toy)
    z = aug.norm.transform(x)
    np.testing.assert_allclose(z[:, :-1].mean(0), 0, atol=1e-4)
    np.testing.assert_array_equal(z[:, -1], x[:, -1])  # terminal: mean 0, std 1, untouched
    np.testing.assert_allclose(aug.norm.inverse(z), x, rtol=1e-5, atol=1e-4)
    raw = np.zeros((6, x.shape[1]), np.float32)
    raw[:, -1] = [0.0, 0.5, 0.5001, 0.9, 1.4, -0.3]
    raw[:, 2:4] = [[0.5, 0.5], [2.0, 0.0], [0.0, -1.5], [0.1, 0.1], [0.0, 0.0], [1.0, 1.0]]
    aug.sample_normalised = lambda n: aug.norm.transform(raw)
    aug.begin_sampling(0)
    out = aug.generate()
    assert out.terminals.tolist() == [False, False, True, True, True, False]  # > 0.5, as the authors
    np.testing.assert_allclose(out.actions, raw[:, 2:4], atol=1e-5)  # not clipped (the authors' default)
    assert out.meta.extra["ser"]["actions_outside_space"] == pytest.approx(2 / 6)
    assert (out.source_episodes == -1).all()  # drawn from a model of the whole dataset
    clipped = SER(smoke(train_steps=10, clip_actions=True), seed=0)
    clipped.load_fitted(toy, aug.fitted_state())
    clipped.sample_normalised = lambda n: aug.norm.transform(raw)
    assert np.abs(clipped.generate().actions).max() <= 1.0


def test_generation_is_seeded_and_a_put_back_model_samples_the_same(toy):
    cfg = smoke(train_steps=30, num_samples=300, sample_batch=128)
    a = SER(cfg, seed=4)
    a.fit(toy)
    b = SER(cfg, seed=4)
    b.load_fitted(toy, a.fitted_state())
    for aug in (a, b):
        aug.begin_sampling(11)
    first, second = a.generate(), b.generate()
    np.testing.assert_array_equal(first.observations, second.observations)
    a.begin_sampling(12)
    assert not np.array_equal(a.generate().observations, first.observations)


def test_an_interrupted_fit_resumes_to_the_same_model(toy, tmp_path):
    import torch

    class Killed(Exception):
        pass

    cfg = smoke(train_steps=300, checkpoint_every=100)
    reference = SER(cfg, seed=2)
    reference.fit(toy)
    killed = SER(cfg, seed=2)
    killed.checkpoint_path = tmp_path / "fit.partial.pt"

    def die_at_200(done, total):
        if done == 200:
            raise Killed()

    killed.on_progress = die_at_200
    with pytest.raises(Killed):
        killed.fit(toy)
    seen = []
    resumed = SER(cfg, seed=2)
    resumed.checkpoint_path = killed.checkpoint_path
    resumed.on_progress = lambda done, total: seen.append(done)
    resumed.fit(toy)
    assert seen[0] == 300 and torch.load(killed.checkpoint_path, weights_only=False)["step"] == 200
    for k, v in reference.ema_model.state_dict().items():
        torch.testing.assert_close(resumed.ema_model.state_dict()[k], v, rtol=0, atol=0)


def test_ser_end_to_end_through_bench_run_synthetic_only(tmp_path, toy_file, results):
    from tests.test_cli import bench

    env = {"AUGBENCH_CACHE": str(toy_file.parent.parent)}
    res = bench("run", "--dataset", "toy-maze", "--task", "1", "--algo", "td3bc", "--augmenter", "ser",
                "--aug-config", '{"preset": "cpu-smoke"}', "--mix", "synthetic", "--steps", "10",
                "--eval-episodes", "1", "--device", "cpu:0", "--algo-config", '{"batch_size": 16}', env=env)
    assert res.returncode == 0, res.stderr
    result = json.loads(next(results.rglob("result.json")).read_text())
    assert result["augmentation"]["generated"] == 2000 and result["config"]["mix"]["mode"] == "synthetic"
    assert result["config"]["augmenter"]["config"]["width"] == 64  # the preset's values are the config
    assert result["augmentation"]["dvr"]["source"] == "simulator"


def test_bf16_autocast_runs_on_the_cpu_and_changes_the_arithmetic_only(toy):
    """`amp: bf16` trains and samples under bfloat16 autocast on the model's device (here the CPU): finite float32
    samples of the same layout, close to the float32 run's (same seeds) but not bitwise equal to them."""
    out = {}
    for amp in ("off", "bf16"):
        aug = SER(smoke(train_steps=30, num_samples=256, sample_batch=128, amp=amp), seed=4)
        aug.fit(toy)
        aug.begin_sampling(11)
        out[amp] = aug.generate()
    a, b = out["off"], out["bf16"]
    assert b.observations.dtype == a.observations.dtype and b.observations.shape == a.observations.shape
    assert np.isfinite(b.observations).all() and np.isfinite(b.actions).all()
    assert not np.array_equal(a.observations, b.observations)
    # same seeds, same data: the bf16 run's samples follow the float32 run's (rounding, not another model)
    spread = np.asarray(a.observations).std(0)
    assert (np.abs(np.asarray(b.observations).mean(0) - np.asarray(a.observations).mean(0)) < 0.5 * spread).all()
