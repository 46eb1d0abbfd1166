"""One run end to end: trainers, augmenters, mixing, the run directory, determinism and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bench.errors import BenchError
from bench.run import RunRequest, execute, plan, run_id

TINY = {"iql": {}, "td3bc": {}, "cql": {"n_action_samples": 2}, "dt": {"preset": "cpu-smoke"},
        "drol": {"actor_hidden_units": [32, 32], "critic_hidden_units": [32, 32], "num_candidates": 4}}


def req(**kw) -> RunRequest:
    base = dict(dataset="toy-maze", task=1, algo="iql", steps=40, eval_every=20, eval_episodes=1,
                device="cpu:0", algo_config={"batch_size": 32})
    base.update(kw)
    return RunRequest(**base)


@pytest.mark.parametrize("algo", sorted(TINY))
def test_each_trainer_trains_the_requested_steps_and_evaluates(algo, toy_file, results):
    r = req(algo=algo, algo_config={**TINY[algo], "batch_size": 16})
    run_dir, result = execute(r)
    assert result["grad_steps"] == 40
    assert result["status"] == "done" and result["metric"] == "success rate (%)"
    curve = (run_dir / "curve.csv").read_text().splitlines()
    assert curve[0] == "step,score,success_rate,return,wall_s" and [c.split(",")[0] for c in curve[1:]] == ["20", "40"]
    from algos import TRAINERS

    assert (run_dir / TRAINERS.get(algo).policy_filename).stat().st_size > 0
    assert not (run_dir.parent.parent.parent / "d3rlpy_logs").exists() and not os.path.exists("d3rlpy_logs")


@pytest.mark.parametrize("algo", ["iql", "dt"])
def test_d3rlpy_counts_the_requested_gradient_steps(algo, toy_file):
    # fit(n_steps=N) with d3rlpy's default 10000 steps per epoch trains nothing when N < 10000: not here.
    from algos import TRAINERS
    from algos.base import resolve
    from bench import data

    ds = data.load("toy-maze", 1)
    cls = TRAINERS.get(algo)
    trainer = cls(resolve(cls.config_class, cls.presets, {**TINY[algo], "batch_size": 8}, "t"), seed=0,
                  device="cpu:0")
    trainer.build(ds)
    trainer.train(7)
    trainer.train(5)
    assert trainer.algo.grad_step == 12 and trainer.grad_steps == 12


def test_result_records_everything(toy_file, results):
    run_dir, result = execute(req())
    config = json.loads((run_dir / "config.json").read_text())
    assert run_dir.name == config["run_id"] == result["run_id"] == run_id({k: v for k, v in config.items()
                                                                              if k != "run_id"})
    for key in ("score", "score_last3_mean", "wall_s", "grad_steps_per_s", "device", "device_name", "versions",
                "git", "preset", "seed"):
        assert key in result, key
    assert result["versions"]["d3rlpy"] == "2.8.1" and result["device"] == "cpu:0"
    assert set(result["git"]) == {"commit", "dirty"}
    assert config["dataset"]["content_hash"] and config["algo"]["config"]["expectile"] == 0.9
    assert result["preset"] == "maze"


def test_run_id_is_stable_and_finished_runs_are_not_repeated(toy_file, results):
    a, _ = execute(req())
    mtime = (a / "result.json").stat().st_mtime_ns
    b, _ = execute(req())
    assert a == b and (a / "result.json").stat().st_mtime_ns == mtime
    c, _ = execute(req(seed=1))
    assert c != a
    assert plan(req()).run_id == run_id(plan(req()).config) == a.name  # recomputed from scratch, same id
    d, _ = execute(req(), force=True)
    assert d == a and (a / "result.json").stat().st_mtime_ns != mtime


def test_same_config_same_curve_and_policy_on_cpu(toy_file, results, tmp_path):
    from bench import data
    from bench.d3 import d3rlpy

    obs = np.asarray(data.load("toy-maze", 1).observations[:64])
    outs = []
    for k in range(2):
        run_dir, result = execute(req(algo="td3bc", steps=60, eval_every=20), force=True)
        policy = d3rlpy.load_learnable(str(run_dir / "policy.d3"), device="cpu:0")
        outs.append(((run_dir / "curve.csv").read_text().split("\n"), policy.predict(obs)))
    strip = lambda rows: [",".join(r.split(",")[:4]) for r in rows]  # noqa: E731  (wall time differs)
    assert strip(outs[0][0]) == strip(outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_none_augmenter_trains_on_exactly_the_original_data(toy_file):
    from bench import data
    from bench.augment import augment
    from bench.batches import TransitionSampler
    from bench.mixing import MixConfig
    from methods import AUGMENTERS

    ds = data.load("toy-maze", 1)
    generated, _, _ = augment(ds, "none", AUGMENTERS.get("none").config_class(), seed=0)
    assert generated is None
    real = {r.tobytes() for r in np.concatenate([ds.observations, ds.actions, ds.next_observations,
                                                 ds.rewards[:, None]], 1)}
    for mode in ("ratio", "union", "synthetic"):
        sampler = TransitionSampler(ds, generated, MixConfig(mode=mode), batch_size=64, seed=0)
        seen = 0
        for _ in range(50):
            b = sampler.sample()
            assert b.n_generated == 0 and len(b) == 64
            rows = np.concatenate([b.observations, b.actions, b.next_observations, b.rewards], 1)
            assert all(r.tobytes() in real for r in rows)
            seen += len(b)
        assert seen == 50 * 64


def _marked_generated(ds):
    from methods.noise import GaussianStateNoise, NoiseConfig

    aug = GaussianStateNoise(NoiseConfig(scale=0.1, size=0.5), seed=0)
    aug.fit(ds)
    gen = aug.generate()
    arrays = {k: np.array(v) for k, v in gen.arrays().items()}
    arrays["rewards"] = np.full(len(gen), 7.0, np.float32)  # a reward no real transition has
    return type(gen)(meta=gen.meta, **arrays).with_hash()


@pytest.mark.parametrize("mode,ratio,batch", [("ratio", 0.25, 64), ("ratio", 0.5, 64), ("ratio", 0.9, 64),
                                              ("ratio", 0.3, 25), ("ratio", 0.1, 5), ("ratio", 0.0, 16),
                                              ("ratio", 1.0, 16), ("synthetic", 0.5, 64), ("union", 0.5, 64)])
def test_mixing_gives_the_requested_share_in_every_batch(toy_file, mode, ratio, batch):
    from bench import data
    from bench.batches import TransitionSampler
    from bench.mixing import MixConfig

    ds = data.load("toy-maze", 1)
    gen = _marked_generated(ds)
    sampler = TransitionSampler(ds, gen, MixConfig(mode=mode, ratio=ratio), batch_size=batch, seed=0)
    counts = []
    for _ in range(200):
        b = sampler.sample()
        marked = int((b.rewards[:, 0] == 7.0).sum())
        assert marked == b.n_generated and len(b) == batch
        counts.append(marked)
    if mode == "ratio":  # exactly round(ratio x batch), half up, in every batch
        assert set(counts) == {int(np.floor(ratio * batch + 0.5))}
    elif mode == "synthetic":
        assert set(counts) == {batch}
    else:  # union: uniform over both, in proportion to their sizes
        expected = len(gen) / (len(gen) + len(ds))
        share = np.mean(counts) / batch
        assert abs(share - expected) < 0.03, (share, expected)
        assert len(set(counts)) > 1  # drawn per batch, not fixed


def test_noise_augmenter_output(toy_file):
    from bench import data
    from methods.noise import GaussianStateNoise, NoiseConfig

    ds = data.load("toy-maze", 1)

    def gen(scale, seed=3):
        aug = GaussianStateNoise(NoiseConfig(scale=scale, size=1.0), seed=seed)
        aug.fit(ds)
        return aug.generate()

    clean, noisy = gen(0.0), gen(0.1)  # same seed: same source rows, the offsets alone differ
    assert noisy.meta.kind == "transitions" and len(noisy) == len(ds)
    assert noisy.meta.origins[noisy.origin[0]] == "noise" and noisy.n_episodes == len(noisy)
    # With no noise every generated transition is a real one.
    real = {r.tobytes() for r in np.concatenate([ds.observations, ds.actions, ds.next_observations], 1)}
    rows = np.concatenate([clean.observations, clean.actions, clean.next_observations], 1)
    assert all(r.tobytes() in real for r in rows)
    offset = noisy.observations - clean.observations
    np.testing.assert_allclose(noisy.next_observations - clean.next_observations, offset, atol=1e-5)
    ratio = offset.std(axis=0) / np.asarray(ds.observations).std(axis=0)
    np.testing.assert_allclose(ratio, 0.1, rtol=0.05)
    np.testing.assert_array_equal(noisy.actions, clean.actions)
    np.testing.assert_array_equal(noisy.terminals, clean.terminals)
    assert gen(0.1).meta.content_hash == noisy.meta.content_hash  # seeded
    assert gen(0.1, seed=4).meta.content_hash != noisy.meta.content_hash


def test_augmentation_is_cached_and_reused(toy_file, results):
    # a size no other test generates: the session cache is shared, and a study test runs noise at size 0.2
    _, first = execute(req(augmenter="noise", augmenter_config={"size": 0.25}))
    _, second = execute(req(augmenter="noise", augmenter_config={"size": 0.25}, steps=20, eval_every=20))
    assert first["augmentation"]["from_cache"] is False and second["augmentation"]["from_cache"] is True
    assert first["augmentation"]["cache_key"] == second["augmentation"]["cache_key"]
    assert first["augmentation"]["generated"] == round(0.25 * 6000)


@pytest.mark.parametrize("kw,match", [
    (dict(augmenter="nosie"), "unknown augmenter 'nosie'.*did you mean noise"),
    (dict(algo="iqll"), "unknown trainer 'iqll'.*did you mean iql"),
    (dict(dataset="toy-maz"), "unknown dataset 'toy-maz'.*did you mean toy-maze"),
    (dict(algo_config={"expectle": 0.8}), "unknown key 'expectle'.*did you mean 'expectile'"),
    (dict(algo_config={"expectile": "high"}), "'expectile' = 'high' must be a number"),
    (dict(augmenter="noise", augmenter_config={"scale": -1}), r"'scale' = -1.0 must be in \[0, inf\)"),
    (dict(steps=-5), "^'steps' must be at least 1"),
    (dict(mix={"ratio": 1.5}), "'ratio' must be in \\[0, 1\\]"),
    (dict(algo="dt", augmenter="noise"), "not applicable"),
    (dict(task=8), "'task' = 8.*no such task"),
    (dict(eval_every=7), "does not divide"),
    (dict(algo_config={"preset": "huge"}), "unknown preset 'huge'"),
])
def test_bad_input_is_refused_before_anything_is_written(toy_file, results, kw, match):
    with pytest.raises(BenchError, match=match):
        execute(req(**kw))
    assert not results.exists()


def test_corrupt_cached_augmentation(toy_file, results):
    from bench import data
    from bench.augment import cache_key, cache_path
    from methods.noise import NoiseConfig

    ds = data.load("toy-maze", 1)
    p = cache_path(cache_key(ds, "noise", NoiseConfig(size=0.3).to_dict(), 0))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"PK\x03\x04 definitely not a dataset")
    with pytest.raises(BenchError, match="corrupt cached augmentation"):
        execute(req(augmenter="noise", augmenter_config={"size": 0.3}))
    assert not (results / "runs").exists() or not any((results / "runs").rglob("result.json"))


def test_cli_bad_input_is_one_line(toy_file, results, tmp_path):
    env = {**os.environ}
    res = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--dataset", "toy-maze", "--task", "1",
                          "--algo", "dt", "--augmenter", "noise", "--steps", "10"], capture_output=True, text=True,
                         env=env)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not applicable" in lines[0]
    res = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--dataset", "toy-maze", "--task", "1",
                          "--algo", "iql", "--algo-config", "{not json"], capture_output=True, text=True, env=env)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode != 0 and len(lines) == 1 and "--algo-config" in lines[0]
    res = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--dataset", "toy-maze", "--task", "1",
                          "--algo", "iql", "--steps", "100", "--eval-every", "30"], capture_output=True, text=True,
                         env=env)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode != 0 and len(lines) == 1 and "--eval-every: 'eval_every' = 30 does not divide" in lines[0]
    assert not results.exists()


def test_killed_run_leaves_no_result_and_rerun_completes(toy_file, results):
    cmd = [sys.executable, "-m", "bench.cli", "run", "--dataset", "toy-maze", "--task", "1", "--algo", "iql",
           "--steps", "600", "--eval-every", "100", "--eval-episodes", "1", "--device", "cpu:0",
           "--algo-config", '{"batch_size": 32}']
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(results.rglob("curve.csv")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    runs = list((results / "runs").iterdir())
    assert len(runs) == 1 and not (runs[0] / "result.json").exists()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    result = json.loads((runs[0] / "result.json").read_text())
    assert result["grad_steps"] == 600
    assert len((runs[0] / "curve.csv").read_text().strip().splitlines()) == 7


def test_minari_run_reports_d4rl_normalised_score(minari_dataset, results):
    from tests.conftest import MINARI_ID

    run_dir, result = execute(RunRequest(dataset=f"minari:{MINARI_ID}", algo="td3bc", steps=20, eval_episodes=2,
                                         device="cpu:0", algo_config={"preset": "locomotion", "batch_size": 16}))
    assert result["metric"] == "normalized score (x100)"
    row = (run_dir / "curve.csv").read_text().splitlines()[1].split(",")
    ret, score = float(row[3]), float(row[1])
    assert score == pytest.approx(100 * (ret - (-20.0)) / (3000.0 - (-20.0)), abs=1e-4)


def final_actions(algo: str, run_dir, obs):
    """The saved policy's actions: d3rlpy's file for d3rlpy trainers, DROL's torch file (latent z = 0)."""
    if algo == "drol":
        import torch

        from blocks.nn import mlp

        state = torch.load(run_dir / "policy.pt", weights_only=False)
        actor = mlp(state["obs_dim"] + state["action_dim"], state["config"]["actor_hidden_units"],
                    state["action_dim"])
        actor.load_state_dict(state["actor"])
        with torch.no_grad():
            x = torch.cat([torch.as_tensor(np.array(obs)), torch.zeros(len(obs), state["action_dim"])], -1)
            return actor(x).numpy()
    from bench.d3 import d3rlpy

    policy = d3rlpy.load_learnable(str(run_dir / "policy.d3"), device="cpu:0")
    if algo == "dt":  # a sequence model: feed the observations as one episode
        wrapper = policy.as_stateful_wrapper(target_return=1.0)
        return np.stack([wrapper.predict(o, 0.0) for o in obs[:16]])
    return policy.predict(obs)


def curve_rows(run_dir) -> list[list[str]]:
    return [row.split(",")[:4] for row in (run_dir / "curve.csv").read_text().splitlines()]  # wall time differs


def interrupt_at(r: RunRequest, step: int) -> None:
    """Run `r` again from scratch and stop it right after the evaluation at `step` (its checkpoint saved)."""
    class Killed(Exception):
        pass

    def kill(at, total, row):
        if at == step:
            raise Killed()

    with pytest.raises(Killed):
        execute(r, force=True, progress=kill)


@pytest.mark.parametrize("algo", ["iql", "td3bc", "drol", "dt"])
def test_interrupted_run_resumes_from_its_checkpoint_with_the_same_result(algo, toy_file, results):
    from bench import data

    obs = np.asarray(data.load("toy-maze", 1).observations[:64])
    r = req(algo=algo, steps=60, eval_every=20, algo_config={**TINY[algo], "batch_size": 32})
    full_dir, full = execute(r)
    reference = final_actions(algo, full_dir, obs)
    full_curve = curve_rows(full_dir)

    interrupt_at(r, 40)
    assert not (full_dir / "result.json").exists() and (full_dir / "checkpoint.pt").exists()
    _, resumed = execute(r)
    assert resumed["resumed_from_step"] == 40 and resumed["grad_steps"] == 60
    assert curve_rows(full_dir) == full_curve
    np.testing.assert_array_equal(final_actions(algo, full_dir, obs), reference)
    assert not (full_dir / "checkpoint.pt").exists() and not list(full_dir.glob("checkpoint-*.model"))


def test_an_unreadable_checkpoint_restarts_from_step_0_and_says_so(toy_file, results):
    r = req(steps=60, eval_every=20)
    full_dir, full = execute(r)
    full_curve = curve_rows(full_dir)

    interrupt_at(r, 40)
    (full_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    _, again = execute(r)
    assert again["resumed_from_step"] == 0 and again["grad_steps"] == 60
    assert any("could not be read" in w and "restarted from step 0" in w for w in again["warnings"])
    assert curve_rows(full_dir) == full_curve


def test_the_runs_device_and_a_seeded_torch_generator_reach_the_augmenter(toy_file, results):
    import torch

    from methods import AUGMENTERS
    from methods.base import Augmenter, AugmenterConfig

    seen = {}

    class Probe(Augmenter):
        name = "device-probe"
        config_class = AugmenterConfig
        output = "transitions"

        def fit(self, dataset):
            self.data = dataset
            seen["device"] = self.device
            seen["draw"] = torch.rand(3, generator=self.torch_generator, device=self.device).tolist()
            seen["generator_device"] = str(self.torch_generator.device)

        def generate(self):
            rows = self.rng.integers(0, len(self.data), 16)
            return self.transitions(self.data, rows, np.asarray(self.data.observations)[rows],
                                    np.asarray(self.data.next_observations)[rows])

    if "device-probe" not in AUGMENTERS.names():
        AUGMENTERS.register(Probe)
    execute(req(augmenter="device-probe", device="cpu:0", seed=5))
    assert seen["device"] == "cpu:0" and seen["generator_device"] == "cpu"
    assert seen["draw"] == torch.rand(3, generator=torch.Generator().manual_seed(5)).tolist()  # seeded by the run
