"""DROL: routing and its gradients, the latent prior, K = 1, the Q scale, presets and CPU determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algos import TRAINERS
from algos.base import resolve
from algos.drol import PRESETS, preset_warning
from blocks.nn import sample_in_ball

SMALL = {"actor_hidden_units": [32, 32], "critic_hidden_units": [32, 32], "batch_size": 64}


def make(toy_file, seed=0, **overrides):
    from bench import data

    ds = data.load("toy-maze", 1)
    cls = TRAINERS.get("drol")
    trainer = cls(resolve(cls.config_class, cls.presets, {**SMALL, **overrides}, "test"), seed=seed, device="cpu:0")
    trainer.build(ds)
    return trainer, trainer.sampler


def a_batch(trainer, sampler):
    return trainer.tensors(sampler.sample())


def test_routing_picks_the_nearest_candidate_and_only_the_winner_gets_gradient(toy_file):
    trainer, buf = make(toy_file, num_candidates=8)
    obs, actions, *_ = a_batch(trainer, buf)
    trainer.train(20)  # move away from the initial weights so candidates spread
    loss, winner, candidates = trainer.actor_loss(obs, actions)
    (grad,) = torch.autograd.grad(loss, candidates)
    c = candidates.detach().numpy()
    nearest = np.argmin(((c - actions.numpy()[:, None, :]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(winner.numpy(), nearest)
    per_candidate = grad.abs().sum(-1).numpy()  # (B, K)
    rows = np.arange(len(nearest))
    assert (per_candidate[rows, nearest] > 0).mean() > 0.9  # winners get gradient (unless clipped on every dim)
    losers = np.ones_like(per_candidate, bool)
    losers[rows, nearest] = False
    assert np.all(per_candidate[losers] == 0)  # losers get none at all


def test_routing_is_recomputed_each_step_with_fresh_latents(toy_file):
    trainer, buf = make(toy_file, num_candidates=8)
    obs, actions, *_ = a_batch(trainer, buf)
    _, w1, c1 = trainer.actor_loss(obs, actions)
    _, w2, c2 = trainer.actor_loss(obs, actions)
    assert not torch.equal(c1, c2) and not torch.equal(w1, w2)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_latent_prior_is_uniform_in_the_solid_ball(dim):
    from scipy import stats

    radius = np.sqrt(dim)
    z = sample_in_ball((100_000, dim), radius, generator=torch.Generator().manual_seed(0)).numpy()
    r = np.linalg.norm(z, axis=1)
    assert r.max() <= radius * (1 + 1e-6)
    # uniform in the ball <=> (r / R)^d ~ U(0, 1), and the direction has no preferred side
    assert stats.kstest((r / radius) ** dim, "uniform").pvalue > 1e-3
    assert np.abs(z.mean(0)).max() < 0.02 * radius
    if dim > 1:  # a shell sampler (all radii R) or a Gaussian would fail this
        assert 0.45 < np.mean(r < radius * 0.5 ** (1 / dim)) < 0.55


def test_k1_is_a_plain_bc_plus_q_actor(toy_file):
    trainer, buf = make(toy_file, num_candidates=1, bc_coef=0.7)
    obs, actions, *_ = a_batch(trainer, buf)
    state = trainer.train_gen.get_state()
    loss, winner, _ = trainer.actor_loss(obs, actions)
    trainer.train_gen.set_state(state)
    z = sample_in_ball(tuple(actions.shape), np.sqrt(trainer.action_dim), generator=trainer.train_gen)
    pi = trainer.actor(torch.cat([obs, z], -1)).clamp(-1, 1)
    q = trainer.critic(torch.cat([obs, pi], -1)).squeeze(-1).min(0).values
    expected = 0.7 * ((pi - actions) ** 2).sum(-1).mean() / trainer.action_dim - q.mean() / q.abs().mean().detach()
    assert torch.all(winner == 0)
    torch.testing.assert_close(loss, expected)
    params = list(trainer.actor.parameters())
    for g, h in zip(torch.autograd.grad(loss, params), torch.autograd.grad(expected, params)):
        torch.testing.assert_close(g, h)


def test_q_scale_carries_no_gradient_and_critics_get_none_from_the_actor(toy_file):
    trainer, buf = make(toy_file)
    trainer.train(10)
    obs, actions, *_ = a_batch(trainer, buf)
    state = trainer.train_gen.get_state()
    loss, winner, candidates = trainer.actor_loss(obs, actions)
    trainer.actor.zero_grad()
    trainer.critic.zero_grad(set_to_none=True)
    loss.backward()
    assert all(p.grad is None for p in trainer.critic.parameters())
    got = [p.grad.clone() for p in trainer.actor.parameters()]
    # the same loss with the scale frozen as a plain number: identical gradients
    trainer.train_gen.set_state(state)
    z = sample_in_ball((len(obs), 16, trainer.action_dim), np.sqrt(trainer.action_dim), generator=trainer.train_gen)
    cand = trainer.actor(torch.cat([obs[:, None].expand(-1, 16, -1), z], -1)).clamp(-1, 1)
    rows = torch.arange(len(obs))
    win = cand[rows, winner]
    q = trainer.critic(torch.cat([obs, win], -1)).squeeze(-1).min(0).values
    scale = float(1.0 / q.abs().mean().detach())
    ref = ((win - actions) ** 2).sum(-1).mean() / trainer.action_dim - scale * q.mean()
    for g, h in zip(got, torch.autograd.grad(ref, list(trainer.actor.parameters()), retain_graph=True)):
        torch.testing.assert_close(g, h)
    # and a gradient that flowed through the scale would differ from it
    leaky = ((win - actions) ** 2).sum(-1).mean() / trainer.action_dim - q.mean() / q.abs().mean()
    leaky_grads = torch.autograd.grad(leaky, list(trainer.actor.parameters()))
    assert any(not torch.allclose(g, h) for g, h in zip(got, leaky_grads))


def test_td_target_uses_the_target_critics_mean_or_min(toy_file):
    for agg in ("mean", "min"):
        trainer, buf = make(toy_file, q_agg=agg)
        obs, actions, rewards, next_obs, masks = a_batch(trainer, buf)
        masks[::2] = 0.0
        with torch.no_grad():
            for p in trainer.target.parameters():
                p.add_(0.1 * torch.randn_like(p))  # target differs from the online critics
        state = trainer.train_gen.get_state()
        loss = trainer.critic_loss(obs, actions, rewards, next_obs, masks)
        trainer.train_gen.set_state(state)
        z = sample_in_ball(tuple(actions.shape), np.sqrt(trainer.action_dim), generator=trainer.train_gen)
        with torch.no_grad():
            nq = trainer.target(torch.cat([next_obs, trainer.actor(torch.cat([next_obs, z], -1)).clamp(-1, 1)],
                                          -1)).squeeze(-1)
            nq = nq.mean(0) if agg == "mean" else nq.min(0).values
            y = rewards + trainer.config.gamma * masks * nq
            q = trainer.critic(torch.cat([obs, actions], -1)).squeeze(-1)
        torch.testing.assert_close(loss, ((q - y) ** 2).mean())


def test_polyak_update_of_the_target_critics(toy_file):
    trainer, buf = make(toy_file, tau=0.25)
    before = {k: v.clone() for k, v in trainer.target.state_dict().items()}
    trainer.train(1)
    online = trainer.critic.state_dict()
    for k, v in trainer.target.state_dict().items():
        torch.testing.assert_close(v, 0.75 * before[k] + 0.25 * online[k])


def test_dataset_actions_are_clipped_and_actions_stay_in_bounds(toy_file):
    trainer, buf = make(toy_file)
    batch = buf.sample()
    batch.actions[:] = 1.0
    _, actions, *_ = trainer.tensors(batch)
    assert float(actions.max()) == pytest.approx(1 - 1e-5)
    obs = np.asarray(buf.sample().observations[:8]) * 100  # far outside the data
    for o in obs:
        a = trainer.act(o)
        assert a.shape == (trainer.action_dim,) and np.all(np.abs(a) <= 1)


def test_evaluation_latent_random_by_default_zero_as_an_option(toy_file):
    trainer, buf = make(toy_file)
    o = np.asarray(buf.sample().observations)[0] * 0.01  # inside the clip range untrained
    assert not np.array_equal(trainer.act(o), trainer.act(o))  # one fresh latent per step
    zero, _ = make(toy_file, eval_latent="zero")
    np.testing.assert_array_equal(zero.act(o), zero.act(o))
    with torch.no_grad():
        expected = zero.actor(torch.cat([torch.as_tensor(o)[None], torch.zeros(1, zero.action_dim)], -1))
    np.testing.assert_allclose(zero.act(o), expected.clamp(-1, 1)[0].numpy())


def test_same_seed_same_training_on_cpu_and_checkpoints_resume_exactly(toy_file, tmp_path):
    a, buf = make(toy_file, seed=3)
    a.train(6)
    sampler_state = a.sampler.state()
    a.save_checkpoint(tmp_path / "ckpt")
    a.train(4)
    b, buf_b = make(toy_file, seed=3)
    b.train(10)
    for x, y in zip(a.state().values(), b.state().values()):
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)
    c, buf_c = make(toy_file, seed=3)
    c.load_checkpoint(tmp_path / "ckpt", 6)
    c.sampler.set_state(sampler_state)
    c.train(4)
    for x, y in zip(a.state().values(), c.state().values()):
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)
    other, buf_o = make(toy_file, seed=4)
    other.train(10)
    assert not torch.equal(other.state()["actor"]["0.weight"], a.state()["actor"]["0.weight"])


def test_paper_architecture_by_default(toy_file):
    trainer, _ = make(toy_file, actor_hidden_units=[512] * 4, critic_hidden_units=[512] * 4)
    linears = [m for m in trainer.actor if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512, 512, 512, trainer.action_dim]
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in trainer.actor)
    assert sum(type(m).__name__ == "EnsembleLayerNorm" for m in trainer.critic.modules()) == 4
    cfg = TRAINERS.get("drol").config_class()
    assert (cfg.num_candidates, cfg.batch_size, cfg.learning_rate, cfg.tau, cfg.q_agg, cfg.actor_q_agg) == \
        (16, 256, 3e-4, 0.005, "mean", "min")
    assert list(cfg.actor_hidden_units) == [512] * 4 and list(cfg.critic_hidden_units) == [512] * 4


def test_presets_and_the_warning_when_none_is_published():
    assert PRESETS["ogbench-antmaze-giant-navigate"] == dict(bc_coef=0.03, q_agg="min", gamma=0.995)
    assert PRESETS["ogbench-antmaze-giant-navigate-tuned"]["num_candidates"] == 1
    assert preset_warning("ogbench-antmaze-giant-navigate", "antmaze-giant-navigate-v0") is None
    assert preset_warning("ogbench-cube-double-tuned", "cube-double-play-v0") is None
    assert "no published preset for 'pointmaze-medium-stitch-v0'" in preset_warning("default",
                                                                                  "pointmaze-medium-stitch-v0")
    assert "preset 'ogbench-scene' is published for it" in preset_warning("default", "scene-play-v0")
    assert "not for 'toy-maze'" in preset_warning("ogbench-scene", "toy-maze")


def test_bench_run_drol_records_the_warning(toy_file, results):
    from bench.run import RunRequest, execute

    r = RunRequest(dataset="toy-maze", task=1, algo="drol", steps=20, eval_every=10, eval_episodes=1,
                   device="cpu:0", algo_config=SMALL)
    run_dir, result = execute(r)
    assert result["grad_steps"] == 20 and (run_dir / "policy.pt").exists()
    assert result["preset"] == "default" and "no published preset for 'toy-maze'" in result["warnings"][0]
