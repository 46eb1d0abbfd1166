"""TATU: truncation by accumulated uncertainty on a hand-made ensemble, the penalty, max_disc, the VAE, a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench import data
from methods import AUGMENTERS

TATU = AUGMENTERS.get("tatu")


@pytest.fixture
def toy(toy_file, monkeypatch):
    monkeypatch.setenv("AUGBENCH_CACHE", str(toy_file.parent.parent))
    return data.load("toy-maze", 1)


class KnownEnsemble:
    """Moves every state by +1 and reward 2; disagreement u = 1 + |s_0| / 100 (known exactly)."""

    def sample(self, s, a, generator):
        return s + 1.0, torch.full((len(s),), 2.0)

    def disagreement(self, s, a):
        return 1.0 + s[:, 0].abs() / 100


class ConstantPolicyVAE:
    latent = 2

    def decode(self, s, z):
        return torch.zeros(len(s), 2)


def tatu_with(toy, **cfg):
    aug = TATU(TATU.resolve_config({"preset": "cpu-smoke", **cfg}), seed=0)
    aug.data, aug.ensemble, aug.vae = toy, KnownEnsemble(), ConstantPolicyVAE()
    return aug


def test_rollouts_stop_exactly_where_the_running_sum_reaches_the_threshold(toy):
    aug = tatu_with(toy, horizon=5, pessimism=1.0, penalty=1.5)
    aug.max_disc = 3.05  # threshold 3.05
    s0 = torch.tensor([[0.0, 0.0], [-100.0, 0.0], [300.0, 0.0]])
    roll = aug.rollout(s0)
    # state 0: u = 1.00, 1.01, 1.02, ... sums 1.00, 2.01, 3.03 (< 3.05 kept), 4.06 -> 3 kept
    # state -100: u = 2.00, 1.99, ... sums 2.00, 3.99 -> 1 kept;  state 300: u = 4 -> none kept
    assert roll["kept"].sum(1).tolist() == [3, 1, 0]
    assert roll["kept"][0].tolist() == [True, True, True, False, False]  # a prefix: never stored again
    u = 1.0 + roll["obs"][0, :3, 0].abs() / 100
    torch.testing.assert_close(roll["rew"][0, :3], 2.0 - 1.5 * u)  # stored reward r - lambda * u
    torch.testing.assert_close(roll["next"][0, :2], roll["obs"][0, 1:3])  # s' of a step is the next step's s


def test_strictly_below_the_threshold(toy):
    aug = tatu_with(toy, horizon=3, pessimism=1.0)
    aug.max_disc = 2.0  # sums 1.0, 2.0: the second equals the threshold and is not kept
    assert aug.rollout(torch.zeros(1, 2))["kept"].sum().item() == 1


def test_max_disc_is_the_brute_force_maximum_and_the_output_is_trajectories(toy):
    aug = TATU(TATU.resolve_config({"preset": "cpu-smoke"}), seed=0)
    aug.fit(toy)
    obs, act = np.asarray(toy.observations), np.asarray(toy.actions)
    brute = max(float(aug.ensemble.disagreement(obs[i:i + 97], act[i:i + 97]).max()) for i in range(0, len(obs), 97))
    assert aug.max_disc == pytest.approx(brute, rel=1e-6)
    aug.begin_sampling(0)
    out = aug.generate()
    assert out.meta.kind == "trajectories"
    counts = out.meta.extra["tatu"]["kept_length_counts"]
    assert sum(counts[1:]) == out.n_episodes and len(out) == sum(k * v for k, v in enumerate(counts))
    assert (out.source_episodes[:, 0] >= 0).all()
    again = TATU(aug.config, seed=0)
    again.load_fitted(toy, aug.fitted_state())
    again.begin_sampling(0)
    np.testing.assert_array_equal(again.generate().observations, out.observations)  # seeded, put back exactly


def test_the_vae_reconstructs_a_known_action_distribution(toy):
    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, (4000, 2)).astype(np.float32)
    a = np.tanh(s @ np.array([[1.5, -0.5], [0.3, 1.0]], np.float32))  # actions a deterministic function of s
    aug = TATU(TATU.resolve_config({"preset": "cpu-smoke", "vae_iterations": 1500, "vae_width": 64}), seed=0)
    aug.data = toy
    gen = torch.Generator().manual_seed(0)
    aug.vae = aug._train_vae(s, a, gen, lambda i: None)
    pred = aug.policy(torch.as_tensor(s[:500])).numpy()
    assert np.mean((pred - a[:500]) ** 2) < 0.02 < np.mean((a[:500] - a[:500].mean(0)) ** 2)


def test_hopper_termination_rule():
    from methods.tatu import termination_rule

    rule = termination_rule("Hopper-v5")
    s = torch.zeros(3, 11)
    s[:, 0] = torch.tensor([1.2, 0.5, 1.2])  # height
    s[2, 1] = 0.3  # angle past 0.2
    assert rule(s).tolist() == [False, True, True]
    assert termination_rule("pointmaze-medium-v0") is None


def test_tatu_end_to_end_through_bench_run(tmp_path, toy_file, results):
    from tests.test_cli import bench

    env = {"AUGBENCH_CACHE": str(toy_file.parent.parent)}
    res = bench("run", "--dataset", "toy-maze", "--task", "1", "--algo", "td3bc", "--augmenter", "tatu",
                "--aug-config", '{"preset": "cpu-smoke"}', "--ratio", "0.3", "--steps", "10", "--eval-episodes",
                "1", "--device", "cpu:0", "--algo-config", '{"batch_size": 16}', env=env)
    assert res.returncode == 0, res.stderr
    result = json.loads(next(results.rglob("result.json")).read_text())
    assert result["augmentation"]["kind"] == "trajectories" and result["augmentation"]["generated"] > 0
    assert result["augmentation"]["dvr"]["segments_violating_share"] is not None
