"""ASTRO's action planner (methods/astro/planner.py) on a toy system with known dynamics: a 2-D point in a walled
box with an inner wall, s' = clip(s + 0.1 a, -1, 1), except that a step crossing the wall x = 0 below y = 0.4
keeps its x (it slides along the wall).  The dynamics model is the true function, so what is measured is the
planner and its Rollout Deviation Feedback alone."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from methods.astro.planner import ActionPlanner, PlannerConfig


WALL_TOP = 0.4  # the inner wall: the segment x = 0, -1 <= y < WALL_TOP (the gap above it leads round)


def step(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The true dynamics, batched (differentiable almost everywhere)."""
    nxt = (s + 0.1 * a).clamp(-1.0, 1.0)
    crosses = (torch.sign(s[:, 0]) * torch.sign(nxt[:, 0]) < 0) & (torch.maximum(s[:, 1], nxt[:, 1]) < WALL_TOP)
    return torch.stack([torch.where(crosses, s[:, 0], nxt[:, 0]), nxt[:, 1]], 1)


class PointDynamics:
    """The true dynamics as the planner's dynamics model (rollout and a differentiable rollout)."""

    def __init__(self, calls=None):
        self.calls = calls

    def rollout_grad(self, s0, actions, generator=None):
        out, s = [], s0
        for j in range(actions.shape[1]):
            s = step(s, actions[:, j])
            out.append(s)
        return torch.stack(out, 1)

    def rollout(self, s0, actions, generator):
        if self.calls is not None:
            self.calls.append(actions.shape)
        with torch.no_grad():
            return self.rollout_grad(s0, actions)


def point_data(episodes=300, steps=40, seed=0):
    """Episodes of a point steered by slowly turning actions in [-1, 1]^2."""
    rng = np.random.default_rng(seed)
    obs = np.zeros((episodes, steps, 2), np.float32)
    act = np.zeros((episodes, steps, 2), np.float32)
    nxt = np.zeros((episodes, steps, 2), np.float32)
    s = rng.uniform(-0.8, 0.8, (episodes, 2)).astype(np.float32)
    s[:, 0] = np.where(np.abs(s[:, 0]) < 0.05, 0.05, s[:, 0])  # no start on the wall
    angle = rng.uniform(0, 2 * np.pi, episodes)
    for t in range(steps):
        angle = angle + rng.normal(0, 0.3, episodes)
        a = (np.stack([np.cos(angle), np.sin(angle)], 1) * rng.uniform(0.5, 1.0, (episodes, 1))).astype(np.float32)
        obs[:, t], act[:, t] = s, a
        s = step(torch.as_tensor(s), torch.as_tensor(a)).numpy()
        nxt[:, t] = s
    return SimpleNamespace(observations=obs.reshape(-1, 2), actions=act.reshape(-1, 2),
                           next_observations=nxt.reshape(-1, 2), episode_offsets=np.arange(episodes + 1) * steps)


SMALL = PlannerConfig(horizon=12, min_length=4, width=32, depth=2, heads=2, diffusion_steps=8, train_steps=600,
                      batch_size=64, lr=2e-3, feedback_train=0.5, log_every=100)


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    data = point_data()
    planner = ActionPlanner(SMALL, 2, 2)
    planner.fit(data, PointDynamics(), torch.Generator().manual_seed(0))
    return data, planner


def queries(data, n=128, seed=1):
    """Source and target pairs from real segments of 6..12 steps (so a plan that reaches exists)."""
    rng = np.random.default_rng(seed)
    ep = rng.integers(0, 300, n)
    k = rng.integers(6, 13, n)
    t = rng.integers(0, 40 - k)
    rows = ep * 40 + t
    s0 = torch.as_tensor(data.observations[rows])
    target = torch.as_tensor(data.next_observations[rows + k - 1])
    return s0, target, torch.as_tensor(k)


def test_the_toy_wall_blocks_below_its_top_and_the_gap_lets_through():
    s = torch.tensor([[-0.05, 0.0], [-0.05, 0.6], [0.5, 0.0]])
    a = torch.tensor([[1.0, 0.5], [1.0, 0.0], [1.0, 0.0]])
    assert torch.allclose(step(s, a), torch.tensor([[-0.05, 0.05], [0.05, 0.6], [0.6, 0.0]]))
    data = point_data()
    blocked = (np.sign(data.observations[:, 0]) != np.sign(data.observations[:, 0] + 0.1 * data.actions[:, 0])) & \
        (data.next_observations[:, 0] == data.observations[:, 0])
    assert blocked.sum() > 1000  # the data meet the wall (1,950 blocked steps of 12,000)


def test_planned_actions_reproduce_their_states(fitted):
    data, planner = fitted
    s0, target, k = queries(data, 32)
    plan = planner.plan(s0, target, k, PointDynamics(), torch.Generator().manual_seed(2), feedback="off")
    assert plan.actions.shape == (32, 12, 2) and plan.states.shape == (32, 12, 2)
    assert torch.allclose(plan.states, PointDynamics().rollout(s0, plan.actions, None))
    assert float(plan.actions.abs().max()) <= 1.0 + 1e-6  # inside the data's action box
    end = plan.states[torch.arange(32), k - 1]
    assert torch.allclose(plan.reach, ((end - target).abs() / torch.as_tensor(planner.step_scale)).amax(1))


def test_feedback_reduces_the_reach_error(fitted):
    data, planner = fitted
    s0, target, k = queries(data)
    reach = {mode: float(planner.plan(s0, target, k, PointDynamics(), torch.Generator().manual_seed(3),
                                      feedback=mode).reach.mean())
             for mode in ("off", "condition", "guidance", "both")}
    # measured at this seed: off 6.96 typical steps, condition 1.85, guidance 2.69, both 1.10 (without the inner
    # wall: 7.2, 1.8, 2.8, 1.0)
    assert reach["condition"] < 0.5 * reach["off"], reach
    assert reach["guidance"] < 0.6 * reach["off"], reach
    assert reach["both"] < min(reach["condition"], reach["guidance"]), reach


def test_feedback_is_computed_during_denoising(fitted):
    data, planner = fitted
    s0, target, k = queries(data, 16)
    calls = []
    plan = planner.plan(s0, target, k, PointDynamics(calls), torch.Generator().manual_seed(4), feedback="condition")
    assert len(calls) == SMALL.diffusion_steps + 1  # a rollout per denoising step, then the final one
    assert len(plan.history) == SMALL.diffusion_steps
    calls.clear()
    planner.plan(s0, target, k, PointDynamics(calls), torch.Generator().manual_seed(4), feedback="off")
    assert len(calls) == 1


def test_planning_is_deterministic_and_round_trips(fitted):
    data, planner = fitted
    s0, target, k = queries(data, 16)
    state = torch.get_rng_state()
    a = planner.plan(s0, target, k, PointDynamics(), torch.Generator().manual_seed(5))
    b = ActionPlanner.from_state(planner.to_state()).plan(s0, target, k, PointDynamics(),
                                                          torch.Generator().manual_seed(5))
    assert torch.equal(a.actions, b.actions)
    assert torch.equal(state, torch.get_rng_state())


def test_fit_is_deterministic_and_leaves_the_global_rng_alone():
    data = point_data(episodes=20)
    cfg = PlannerConfig(horizon=8, width=16, depth=1, heads=2, diffusion_steps=3, train_steps=5, batch_size=8)
    state = torch.get_rng_state()
    nets = []
    for _ in range(2):
        p = ActionPlanner(cfg, 2, 2)
        p.fit(data, PointDynamics(), torch.Generator().manual_seed(7))
        nets.append(p.net.state_dict())
    assert all(torch.equal(nets[0][key], nets[1][key]) for key in nets[0])
    assert torch.equal(state, torch.get_rng_state())


def test_bad_input_is_refused(fitted):
    data, planner = fitted
    s0, target, k = queries(data, 4)
    with pytest.raises(ValueError, match="stitch lengths"):
        planner.plan(s0, target, torch.full((4,), 13), PointDynamics(), torch.Generator())
    with pytest.raises(ValueError, match="feedback"):
        planner.plan(s0, target, k, PointDynamics(), torch.Generator(), feedback="sometimes")
    with pytest.raises(ValueError, match="mask_ratio"):
        PlannerConfig(mask_ratio=1.5).validate()
