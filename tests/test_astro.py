"""ASTRO the augmenter (methods/astro/astro.py): stitches whose states are the dynamics model's rollout of the
planned actions, joined to their targets; qualification reasons; the ablation switches; resuming a fit (a run:
test_contracts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from methods import AUGMENTERS
from methods.astro.astro import REASONS, discounted_rtg

AS = AUGMENTERS.get("astro")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy(toy_task1):
    return toy_task1


# ASTRO's own choices (the DiT dynamics, conditioning feedback), every stitch accepted unless a test says
BASE = {"preset": "cpu-smoke", "dynamics": "dit", "feedback": "condition", "prefer": "return", "reach_tol": 1e9,
        "delta": 1e9}


@pytest.fixture(scope="module")
def fitted(toy, one_torch_thread):
    aug = AS(AS.resolve_config(BASE), seed=0)
    aug.fit(toy)
    return aug


def sampler(aug, **sample):
    """The fitted augmenter with other sampling fields (as the harness does: the fit is reused)."""
    other = AS(AS.resolve_config({**BASE, **sample}), seed=0)
    other.load_fitted(aug.data, aug.fitted_state())
    other.begin_sampling(1)
    other._prepare()
    return other


def test_discounted_return_to_go_known_answer():
    rtg = discounted_rtg(np.array([1.0, 1.0, 1.0, 2.0, 0.0]), np.array([0, 3, 5]), 0.5)
    np.testing.assert_allclose(rtg, [1.75, 1.5, 1.0, 2.0, 0.0])


def test_stitches_start_at_the_source_end_at_the_target_and_follow_the_model(fitted, toy):
    aug = sampler(fitted)
    b = aug.stitch_batch()
    assert b["n"] > 0
    n, k = b["n"], b["k"]
    rows = torch.arange(n)
    obs = torch.as_tensor(toy.observations)
    off = toy.episode_offsets
    src = torch.as_tensor(off[b["source_episode"]] + b["source_step"])
    tgt = torch.as_tensor(off[b["target_episode"]] + b["target_step"])
    assert torch.equal(b["states"][:, 0], obs[src])
    assert torch.equal(b["states"][rows, k], obs[tgt])  # join "target"
    assert (b["source_episode"] != b["target_episode"]).all()  # other trajectories only
    # the states before the join are the dynamics model's rollout of the actions (planned, not inferred)
    again = sampler(fitted, join="reached")
    c = again.stitch_batch()
    assert (c["states"][rows, k] != obs[tgt]).any()
    assert set(int(r) for r in b["reason"]) <= set(range(-1, len(REASONS)))


@pytest.fixture(scope="module")
def fitted_ensemble(toy, one_torch_thread):
    """The cpu-smoke preset as it is: the ensemble dynamics (deterministic rollouts), both feedbacks."""
    aug = AS(AS.resolve_config({"preset": "cpu-smoke"}), seed=0)
    aug.fit(toy)
    return aug


def test_planned_states_are_the_model_rollout_and_inverse_actions_are_not(fitted_ensemble):
    def stitches(**sample):
        aug = AS(AS.resolve_config({"preset": "cpu-smoke", "join": "reached", "qualify": False, **sample}), seed=0)
        aug.load_fitted(fitted_ensemble.data, fitted_ensemble.fitted_state())
        aug.begin_sampling(1)
        aug._prepare()
        b = aug.stitch_batch()
        again = aug.dynamics.rollout(b["states"][:, 0], b["actions"], torch.Generator().manual_seed(0))
        valid = torch.arange(aug.config.horizon)[None] < b["k"][:, None]
        gap = ((again - b["states"][:, 1:]).abs() / aug.step_scale).amax(-1)[valid]
        return aug, b, gap

    _, _, gap = stitches()
    assert float(gap.max()) < 1e-4  # states and actions agree by construction (in the model)
    inv, b, gap = stitches(actions="inverse")
    assert float(gap.mean()) > 1e-2  # inferred actions do not reproduce the forced state path
    rows = torch.arange(b["n"])
    goal = torch.as_tensor(inv.data.observations)[torch.as_tensor(inv.data.episode_offsets[b["target_episode"]]
                                                                 + b["target_step"])]
    assert torch.allclose(b["states"][rows, b["k"]], goal, atol=1e-4)  # ... which ends at the target


def pair_rows(aug, b):
    """The dataset rows of a stitch batch's sources and targets."""
    offsets = torch.as_tensor(aug.data.episode_offsets)
    return tuple(offsets[torch.as_tensor(b[f"{end}_episode"]).long()] + torch.as_tensor(b[f"{end}_step"])
                 for end in ("source", "target"))


def test_ablation_switches_change_what_they_name(fitted):
    base = sampler(fitted).stitch_batch()
    from methods.astro.tdr import phi_distance

    for metric in ("euclidean", "random"):
        aug = sampler(fitted, target_metric=metric, d_min=0.0, d_max=1e9)
        b = aug.stitch_batch()
        assert b["n"] > 0
        s_row, t_row = pair_rows(aug, b)
        obs = torch.as_tensor(aug.data.observations)
        steps = phi_distance(aug.emb[s_row], aug.emb[t_row])
        if metric == "euclidean":  # chosen by the raw distance ...
            assert torch.allclose(b["distance"], (obs[s_row] - obs[t_row]).norm(dim=-1), atol=1e-5)
        # ... and, like ASTRO's, planned over as many steps as the TDR says the target is away
        expect = torch.ceil(aug.config.length_scale * steps).long().clamp(aug.config.min_length, aug.config.horizon)
        assert torch.equal(b["k"], expect)
    off = sampler(fitted, feedback="off").stitch_batch()
    assert off["history"] == [] and len(base["history"]) == fitted.config.diffusion_steps
    fixed = sampler(fitted, fixed_length=5).stitch_batch()
    assert (fixed["k"] == 5).all()
    strict = sampler(fitted, reach_tol=1e-6, delta=1e9).stitch_batch()
    assert (strict["reason"] == REASONS.index("reach")).all()
    loose = sampler(fitted, reach_tol=1e-6, qualify=False).stitch_batch()
    assert (loose["reason"] == -1).all()
    window = sampler(fitted, d_min=1e8, d_max=1e9).stitch_batch()
    assert window["n"] == 0 and window["no_target"] == window["sources"]


def test_component_options_reach_their_components_and_keep_old_ids(fitted):
    from bench.config import hashed_config

    aug = AS(AS.resolve_config({**BASE, "tdr_geometric_p": 0.05, "tdr_normalize_inputs": True,
                                "dyn_sample_noise": 0.5, "dyn_clip_denoised": None, "consistency": 3.0,
                                "consistency_scale": 7.0, "window_units": "steps"}), seed=0)
    tdr, dyn, _ = aug._configs()
    assert (tdr.geometric_p, tdr.normalize_inputs, dyn.sample_noise, dyn.clip_denoised) == (0.05, True, 0.5, None)
    aug.load_fitted(fitted.data, fitted.fitted_state())
    aug.begin_sampling(1)
    aug._prepare()
    assert (aug.tcfg.consistency_scale, aug.tcfg.tdr_discount) == (7.0, aug.config.discount)
    default = AS.resolve_config(BASE)  # at their old values the new options are not part of the hashed config
    assert set(AS.config_class.added_later) <= set(default.to_dict())
    assert not set(AS.config_class.added_later) & set(hashed_config(AUGMENTERS, "astro", default.to_dict()))
    # in true steps, the stitch is as long as the TDR's discounted distance says: d = log(1 - (1 - g) phi) / log g
    stepped = sampler(fitted, window_units="steps", d_min=0.0, d_max=1e9)
    b = stepped.stitch_batch()
    s_row, t_row = pair_rows(stepped, b)
    from methods.astro.tdr import phi_distance

    g, H = stepped.config.discount, stepped.config.horizon
    phi = phi_distance(stepped.emb[s_row], stepped.emb[t_row]).double()
    d = torch.where((1 - g) * phi < 1, torch.log(1 - (1 - g) * phi.clamp(max=0.999 / (1 - g))) / np.log(g), H)
    assert torch.equal(b["k"], torch.ceil(d).long().clamp(stepped.config.min_length, H))
    with pytest.raises(BenchError, match="window_units"):
        AS.resolve_config({**BASE, "window_units": "steps", "discount": 1.0})
    strict = sampler(fitted, consistency=1.0, consistency_scale=1e6)  # no candidate agrees with the geometry
    strict.generate()
    assert strict.stats["no_target_inconsistent"] == strict.stats["no_target"] == strict.stats["attempts"] > 0


def test_generate_counts_every_reason_and_writes_trajectories(fitted, toy):
    aug = sampler(fitted)  # cpu-smoke accepts any reach and model error: a 40-step model's stitches
    out = aug.generate()
    st = aug.stats
    assert st["attempts"] == st["accepted"] + sum(st[r] for r in REASONS)
    assert st["accepted"] > 0 and out is not None and out.meta.kind == "trajectories"
    assert len(out) == st["transitions"] == sum(int(k) * int(v) for k, v in st["step_counts"].items())
    assert st["reach_mean_accepted"] >= 0
    assert len(st["reach_by_denoising_step"]) == aug.config.diffusion_steps
    full = sampler(fitted, emit="full", budget=20, max_iterations=1)
    assert full.generate() is not None


def test_generation_is_deterministic(fitted):
    a, b = sampler(fitted).stitch_batch(), sampler(fitted).stitch_batch()
    assert torch.equal(a["states"], b["states"]) and torch.equal(a["actions"], b["actions"])


def test_bad_configs_are_refused_in_one_line():
    for bad, words in [({"target_metric": "bfs"}, "target_metric"),
                       ({"fixed_length": 99}, "horizon"), ({"d_min": 50.0, "d_max": 10.0}, "d_min"),
                       ({"elites": 9}, "elites")]:
        with pytest.raises(BenchError, match=words):
            AS.resolve_config({"preset": "cpu-smoke", **bad})
    for dynamics in ("ensemble", "dit"):  # guidance differentiates through either model's rollout
        AS.resolve_config({"preset": "cpu-smoke", "feedback": "guidance", "dynamics": dynamics})


def test_ensemble_dynamics_with_guidance_feedback(fitted_ensemble):
    aug = fitted_ensemble
    aug.begin_sampling(0)
    aug._prepare()
    b = aug.stitch_batch()
    assert b["n"] > 0 and aug.checker is aug.dynamics.ensemble
    assert np.isfinite(b["reach"].numpy()).all()


def test_dit_dynamics_with_guidance_feedback(fitted):
    """Gradient guidance through the DiT dynamics model's sampler: deterministic under the seed, and its plans
    differ from the conditioning-only plans of the same fit."""
    a, b = sampler(fitted, feedback="both").stitch_batch(), sampler(fitted, feedback="both").stitch_batch()
    assert a["n"] > 0 and np.isfinite(a["reach"].numpy()).all()
    assert torch.equal(a["actions"], b["actions"])
    plain = sampler(fitted, feedback="condition").stitch_batch()
    assert not torch.equal(a["actions"], plain["actions"])


def test_an_interrupted_fit_resumes_to_the_same_model(toy, tmp_path, monkeypatch):
    """Killed after the planner's last checkpoint (before its stage is saved as done): the resumed fit skips the
    TDR and the dynamics model, resumes the planner, and ends with the uninterrupted fit's weights."""
    from bench.augment import augment, fit_key, fitted_path

    monkeypatch.setenv("AUGBENCH_CACHE", str(tmp_path))
    cfg = AS.resolve_config({"preset": "cpu-smoke"})
    reference = AS(cfg, seed=2)
    reference.fit(toy)
    planner_end = cfg.tdr_steps + cfg.dyn_train_steps + cfg.train_steps  # the ensemble dynamics: no checker fit

    class Killed(Exception):
        pass

    def kill(done, total):
        if done == planner_end:
            raise Killed()

    with pytest.raises(Killed):
        augment(toy, "astro", cfg, seed=2, progress=kill)
    model = fitted_path(fit_key(toy, "astro", cfg.to_dict(), 2, AS.sample_fields))
    assert not model.exists() and model.with_suffix(".partial.pt").exists()
    from methods.astro.dynamics import DynamicsModel
    from methods.astro.tdr import TDR

    def refit(*args, **kwargs):
        raise AssertionError("a finished stage was fitted again")

    monkeypatch.setattr(TDR, "fit", refit)
    monkeypatch.setattr(DynamicsModel, "fit", refit)
    augment(toy, "astro", cfg, seed=2)
    state = torch.load(model, weights_only=False)
    for part in ("planner", "inverse"):
        ref = reference.fitted_state()[part]
        got = state[part]
        ref, got = (ref["net"], got["net"]) if part == "planner" else (ref, got)
        assert all(torch.equal(ref[k], got[k]) for k in ref), part


def test_inverse_ablation_with_delta_input_reads_raw_states(fitted_ensemble, toy):
    """`inverse_input: delta`: the ablation's inverse model (blocks.nn.InverseDynamics) takes raw states with the
    data's scales, fits, saves its scales with the weights, and stitches."""
    cfg = AS.resolve_config({"preset": "cpu-smoke", "inverse_input": "delta", "actions": "inverse",
                             "qualify": False, "inv_steps": 200})
    aug = AS(cfg, seed=0)
    state = dict(fitted_ensemble.fitted_state())
    aug.tdr, aug.dynamics, aug.planner = fitted_ensemble.tdr, fitted_ensemble.dynamics, fitted_ensemble.planner
    aug.checker, aug.model_error, aug.data = fitted_ensemble.checker, fitted_ensemble.model_error, toy
    aug._fit_inverse(toy, torch.Generator().manual_seed(0), lambda i: None)
    mean, std, step = aug.inverse.stats.numpy()
    obs = np.asarray(toy.observations, np.float64)
    np.testing.assert_allclose(mean, obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(step, (np.asarray(toy.next_observations) - obs).std(0), rtol=1e-4)
    s, s2 = torch.as_tensor(toy.observations[:256]), torch.as_tensor(toy.next_observations[:256])
    with torch.no_grad():
        a = aug.planner.a_norm.inverse(aug.inverse(aug._inverse_in(s), aug._inverse_in(s2)))
    assert float((a - torch.as_tensor(toy.actions[:256])).abs().mean()) < 0.1  # raw deltas: a near-linear map
    aug._fit_state = {**state, "inverse": aug.inverse.state_dict()}
    again = AS(cfg, seed=0)
    again.load_fitted(toy, aug.fitted_state())
    torch.testing.assert_close(again.inverse.stats, aug.inverse.stats)
    again.begin_sampling(1)
    again._prepare()
    b = again.stitch_batch()
    assert b["n"] > 0 and torch.isfinite(b["actions"]).all()


def test_best_of_n_plans_keep_the_plan_nearest_the_target(fitted):
    """`plans` = 4: four plans per pair in one batch of the planner; each pair keeps its smallest reach error."""
    aug = sampler(fitted, plans=4)
    calls = []
    real = aug.planner.plan

    def spy(s0, goal, k, *args, **kw):
        p = real(s0, goal, k, *args, **kw)
        calls.append((s0, goal, k, p))
        return p

    aug.planner.plan = spy
    b = aug.stitch_batch()
    (s0, goal, k, p), = calls  # one planner call for all of them
    n = b["n"]
    assert len(s0) == 4 * n and torch.equal(s0[::4], b["states"][:, 0]) and torch.equal(k[::4], b["k"])
    reach = p.reach.view(n, 4)
    best = reach.argmin(1)
    assert torch.equal(b["reach"], reach.min(1).values)
    assert torch.equal(b["actions"], p.actions.view(n, 4, *p.actions.shape[1:])[torch.arange(n), best])
    one = sampler(fitted).stitch_batch()  # plans = 1: as before
    assert one["n"] == n and one["reach"].shape == (n,)
