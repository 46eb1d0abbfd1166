"""ASTRO's stitch-target selection (methods/astro/targets.py) on hand-made tensors: the window and the episode
rule, the return preference (greedy, softmax) and uniform choice, TDR vs Euclidean across a "wall", the random
ablation, determinism and the global RNG, the consistency filter, and one tiny TDR fit end to end."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from methods.astro.targets import TargetConfig, draw_candidates, select_targets
from methods.astro.tdr import TDR, TDRConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors: one thread (tests/conftest.py)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def line(distances) -> torch.Tensor:
    """Embeddings on a line: candidate c sits at TDR distance distances[c] from a source at the origin."""
    d = torch.as_tensor(distances, dtype=torch.float32)
    return torch.stack([d, torch.zeros_like(d)], dim=-1)


ORIGIN = torch.zeros(1, 2)


def test_defaults_and_validate():
    cfg = TargetConfig().validate()
    assert (cfg.metric, cfg.d_min, cfg.d_max, cfg.candidates, cfg.prefer, cfg.consistency) == \
        ("tdr", 10.0, 40.0, 512, "return", None)
    for bad in ({"metric": "cosine"}, {"prefer": "best"}, {"d_min": -1.0}, {"d_min": 5.0, "d_max": 4.0},
                {"candidates": 0}, {"temperature": 0.0}, {"consistency": 0.5}, {"tdr_discount": 1.0},
                {"metric": "euclidean", "consistency": 2.0}, {"consistency_scale": 0.0}, {"d_max": float("inf")}):
        with pytest.raises(ValueError):
            replace(TargetConfig(), **bad).validate()
    lo, hi = replace(TargetConfig(), tdr_discount=0.99).window()
    assert lo == pytest.approx((1 - 0.99 ** 10) / 0.01) and hi == pytest.approx((1 - 0.99 ** 40) / 0.01)


def test_window_and_other_episode():
    # source 0 (episode 0): candidates at 5, 10, 25, 40, 45 (episode 1), and 20 on its own episode
    # source 1 (episode 1): the same candidates, shared; its only in-window ones are on its own episode
    emb = line([5.0, 10.0, 25.0, 40.0, 45.0, 20.0])
    ep = torch.tensor([1, 1, 1, 1, 1, 0])
    src = torch.zeros(2, 2)
    out = select_targets(src, emb, torch.zeros(6), ep, torch.tensor([0, 1]), TargetConfig(), gen())
    assert out["qualifying"][0].tolist() == [False, True, True, True, False, False]  # both ends inclusive
    assert out["qualifying"][1].tolist() == [False] * 5 + [True]
    assert out["n_qualifying"].tolist() == [3, 1]
    assert out["chosen"][0].item() in (1, 2, 3) and out["chosen"][1].item() == 5

    # a source with nothing qualifying: has False, chosen -1, distance NaN
    out = select_targets(ORIGIN, emb, torch.zeros(6), ep, torch.tensor([1]), replace(TargetConfig(), d_min=100.0,
                                                                                       d_max=200.0), gen())
    assert not out["has"][0] and out["chosen"][0].item() == -1 and torch.isnan(out["distance"][0])
    assert out["n_qualifying"][0].item() == 0


def test_prefer_return_takes_the_best_qualifying():
    emb = line([20.0, 30.0, 35.0, 50.0])  # the last one is out of the window, and has the best return
    rtg = torch.tensor([1.0, 7.0, 3.0, 100.0])
    out = select_targets(ORIGIN.expand(50, 2), emb, rtg, torch.ones(4), torch.zeros(50), TargetConfig(), gen())
    assert (out["chosen"] == 1).all() and torch.allclose(out["distance"], torch.full((50,), 30.0))
    # ties among the best: broken uniformly at random, both taken over draws
    rtg = torch.tensor([7.0, 7.0, 3.0, 100.0])
    out = select_targets(ORIGIN.expand(400, 2), emb, rtg, torch.ones(4), torch.zeros(400), TargetConfig(), gen())
    counts = torch.bincount(out["chosen"], minlength=4).tolist()
    assert counts[2] == counts[3] == 0 and min(counts[:2]) > 150


def test_prefer_softmax_follows_the_distribution():
    emb = line([20.0, 30.0, 35.0, 50.0])
    rtg = torch.tensor([0.0, 1.0, 2.0, 10.0])
    cfg = replace(TargetConfig(), prefer="softmax", temperature=1.0)
    n = 20000
    out = select_targets(ORIGIN.expand(n, 2), emb, rtg, torch.ones(4), torch.zeros(n), cfg, gen())
    freq = torch.bincount(out["chosen"], minlength=4).double() / n
    expect = torch.softmax(torch.tensor([0.0, 1.0, 2.0]).double(), 0)
    assert freq[3] == 0 and torch.allclose(freq[:3], expect, atol=0.015)


def test_uniform_takes_every_qualifying_and_nothing_else():
    emb = line([5.0, 12.0, 18.0, 33.0, 60.0, 15.0])
    ep = torch.tensor([1, 2, 3, 4, 5, 0])  # the last is on the source's episode
    rtg = torch.tensor([0.0, 0.0, 0.0, 100.0, 0.0, 0.0])  # ignored by "uniform"
    n = 3000
    out = select_targets(ORIGIN.expand(n, 2), emb, rtg, ep, torch.zeros(n), replace(TargetConfig(), prefer="uniform"),
                         gen())
    counts = torch.bincount(out["chosen"], minlength=6)
    assert counts[[0, 4, 5]].sum() == 0 and (counts[1:4] > 800).all()


def test_tdr_rejects_a_target_behind_a_wall_euclidean_accepts_it():
    # raw xy: the candidate is 1 unit from the source, behind a wall; the TDR (the way around) says 80 steps.  A
    # second candidate is 3 units away in the open, 25 steps.  Euclidean window [0.5, 2]: only the wall one.
    src_xy, cand_xy = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    src_emb, cand_emb = torch.zeros(1, 2), line([80.0, 25.0])
    ep, rtg = torch.tensor([1, 2]), torch.tensor([5.0, 0.0])  # the wall target has the better return
    tdr = select_targets(src_emb, cand_emb, rtg, ep, torch.zeros(1), TargetConfig(), gen(), src_xy, cand_xy)
    assert tdr["qualifying"][0].tolist() == [False, True] and tdr["chosen"].item() == 1
    euc = replace(TargetConfig(), metric="euclidean", d_min=0.5, d_max=2.0)
    out = select_targets(None, None, rtg, ep, torch.zeros(1), euc, gen(), src_xy, cand_xy)
    assert out["qualifying"][0].tolist() == [True, False] and out["chosen"].item() == 0
    assert out["distance"].item() == pytest.approx(1.0) and torch.isnan(out["steps"]).all()
    out = select_targets(src_emb, cand_emb, rtg, ep, torch.zeros(1), euc, gen(), src_xy, cand_xy)
    assert out["chosen"].item() == 0 and out["distance"].item() == pytest.approx(1.0)
    assert out["steps"].item() == pytest.approx(80.0)  # its TDR distance: ASTRO's plan length for it
    assert tdr["steps"].item() == pytest.approx(25.0) == tdr["distance"].item()
    with pytest.raises(ValueError):
        select_targets(None, None, rtg, ep, torch.zeros(1), euc, gen())  # euclidean needs the raw states


def test_random_ignores_distance_but_not_the_episode():
    emb = line([0.5, 3.0, 1000.0, 25.0])
    ep = torch.tensor([1, 2, 3, 0])
    n = 3000
    cfg = replace(TargetConfig(), metric="random", prefer="uniform")
    out = select_targets(ORIGIN.expand(n, 2), emb, torch.zeros(4), ep, torch.zeros(n), cfg, gen())
    counts = torch.bincount(out["chosen"], minlength=4)
    assert counts[3] == 0 and (counts[:3] > 800).all()
    assert torch.allclose(out["distance"], emb[out["chosen"], 0])  # the TDR distance is still reported
    # without embeddings: NaN distances; with prefer "return": the best return, whatever its distance
    out = select_targets(None, None, torch.tensor([0.0, 0.0, 9.0, 99.0]), ep, torch.zeros(5),
                         replace(cfg, prefer="return"), gen())
    assert (out["chosen"] == 2).all() and torch.isnan(out["distance"]).all()


def test_per_source_candidates_and_determinism():
    g = gen(3)
    S, P = 16, 200
    pool_emb = torch.rand(P, 4, generator=g) * 60
    pool_ep = torch.randint(10, (P,), generator=g)
    pool_rtg = torch.randn(P, generator=g)
    src_emb, src_ep = torch.rand(S, 4, generator=g) * 60, torch.randint(10, (S,), generator=g)
    cfg = replace(TargetConfig(), candidates=64, prefer="softmax")

    def run(seed):
        gg = gen(seed)
        cand = draw_candidates(P, S, cfg, gg)
        assert cand.shape == (S, 64) and all(len(set(r.tolist())) == 64 for r in cand)  # without replacement
        out = select_targets(src_emb, pool_emb[cand], pool_rtg[cand], pool_ep[cand], src_ep, cfg, gg)
        return cand, out

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    (c1, o1), (c2, o2), (c3, _) = run(7), run(7), run(8)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is untouched
    assert torch.equal(c1, c2) and torch.equal(o1["chosen"], o2["chosen"])
    assert not torch.equal(c1, c3)
    # the chosen are qualifying and their reported distance is the TDR distance
    has = o1["has"]
    assert has.any()
    rows = torch.arange(S)[has]
    idx = c1[rows, o1["chosen"][has]]
    d = (src_emb[rows] - pool_emb[idx]).norm(dim=1)
    assert torch.allclose(o1["distance"][has], d, atol=1e-5)
    assert ((d >= 10) & (d <= 40)).all() and (pool_ep[idx] != src_ep[rows]).all()
    assert draw_candidates(20, 3, cfg, gen()).shape == (3, 20)  # a pool smaller than `candidates`


def test_consistency_filter():
    # raw distances 1, 2, 2, 4; TDR distances 20, 20, 40, 20: ratios 20, 10, 20, 5 steps per unit.  With the
    # scale 20: r = 1, 0.5, 1, 0.25 -> max(r, 1/r) = 1, 2, 1, 4.
    src_xy = torch.zeros(1, 2)
    cand_xy = torch.tensor([[1.0, 0.0], [2.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    cand_emb = line([20.0, 20.0, 40.0, 20.0])
    ep, rtg = torch.ones(4), torch.zeros(4)
    base = replace(TargetConfig(), consistency_scale=20.0)

    def qual(**kw):
        out = select_targets(torch.zeros(1, 2), cand_emb, rtg, ep, torch.zeros(1), replace(base, **kw), gen(),
                             src_xy, cand_xy)
        return out["qualifying"][0].tolist()

    assert qual() == [True] * 4  # off
    assert qual(consistency=1.5) == [True, False, True, False]
    assert qual(consistency=2.0) == [True, True, True, False]
    assert qual(consistency=4.0) == [True] * 4
    # fitted scale: the median ratio of the window's pairs, (20, 10, 20, 5) -> 15; r = 4/3, 2/3, 4/3, 1/3
    assert qual(consistency_scale=None, consistency=1.4) == [True, False, True, False]
    assert qual(consistency_scale=None, consistency=1.6) == [True, True, True, False]
    with pytest.raises(ValueError):
        select_targets(torch.zeros(1, 2), cand_emb, rtg, ep, torch.zeros(1), replace(base, consistency=2.0), gen())

    def flags(**kw):
        out = select_targets(torch.zeros(1, 2), cand_emb, rtg, ep, torch.zeros(1), replace(base, **kw), gen(),
                             src_xy, cand_xy)
        return out["has"].item(), out["inconsistent"].item()

    # every candidate lost to the filter (scale 100: max(r, 1/r) = 5, 10, 5, 20) is counted apart from an
    # empty window
    assert flags(consistency_scale=100.0, consistency=4.0) == (False, True)
    assert flags(consistency_scale=100.0, consistency=5.0) == (True, False)
    assert flags(d_min=100.0, d_max=200.0, consistency=4.0) == (False, False)
    assert flags() == (True, False)


def test_with_a_fitted_tdr(toy_task1):
    """A tiny TDR fit on the toy maze: its embeddings go through select_targets, the reported distance is
    TDR.distance of the source and the chosen state, and the chosen lie on other episodes."""
    tdr = TDR(TDRConfig(hidden=(16, 16), latent=4, batch_size=32, steps=25, log_every=25))
    tdr.fit(toy_task1, gen(0))
    obs = np.asarray(toy_task1.observations, np.float32)
    ep = np.repeat(np.arange(len(toy_task1.episode_offsets) - 1), np.diff(toy_task1.episode_offsets))
    rng = np.random.default_rng(0)
    src = rng.choice(len(obs), 8, replace=False)
    emb = tdr.embed(obs)
    d_all = torch.cdist(emb[src], emb)
    lo, hi = float(d_all.quantile(0.2)), float(d_all.quantile(0.6))  # a window that the tiny fit populates
    cfg = replace(TargetConfig(), d_min=lo, d_max=hi, candidates=128)
    g = gen(1)
    cand = draw_candidates(len(obs), len(src), cfg, g)
    ep_t = torch.as_tensor(ep)
    out = select_targets(emb[src], emb[cand], torch.zeros(cand.shape), ep_t[cand], ep_t[src], cfg, g)
    has = out["has"]
    assert has.any()
    rows = np.flatnonzero(has.numpy())
    picked = cand[torch.as_tensor(rows), out["chosen"][has]].numpy()
    d = tdr.distance(obs[src[rows]], obs[picked])
    assert torch.allclose(out["distance"][has], d, atol=1e-4)
    assert (ep[picked] != ep[src[rows]]).all() and ((d >= lo) & (d <= hi)).all()
