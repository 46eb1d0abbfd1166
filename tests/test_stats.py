"""The report's statistics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from bench.report import stats


def test_iqm_known_answer_and_interval():
    # 8 values: the IQM drops the lowest and highest quarter (2 each) and averages the middle 4.
    scores = np.array([[0.0, 100.0], [10.0, 30.0], [20.0, 40.0], [50.0, 60.0]])  # 4 runs x 2 tasks
    middle = np.sort(scores.ravel())[2:6]  # 20, 30, 40, 50
    est = stats.iqm({"a": scores}, reps=500)["a"]
    assert est.point == pytest.approx(middle.mean())  # 35.0
    assert est.low <= est.point <= est.high
    constant = stats.iqm({"c": np.full((5, 3), 7.0)}, reps=200)["c"]
    assert (constant.point, constant.low, constant.high) == (7.0, 7.0, 7.0)
    again = stats.iqm({"a": scores}, reps=500)["a"]
    assert again == est  # seeded


def test_probability_of_improvement_known_answers():
    x = np.array([[3.0, 1.0], [4.0, 2.0]])
    y = np.array([[1.0, 1.0], [2.0, 5.0]])
    # Task 0: X beats Y in all 4 pairs -> 1.0.  Task 1: pairs (1,1) tie .5, (1,5) 0, (2,1) 1, (2,5) 0 -> 1.5/4.
    by_hand = (1.0 + 1.5 / 4) / 2
    est = stats.probability_of_improvement(x, y, reps=500)
    assert est.point == pytest.approx(by_hand)
    assert est.low <= est.point <= est.high
    assert stats.probability_of_improvement(y + 10, y, reps=200).point == 1.0
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement(x, y[:, :1])


def test_relative_improvement_in_percent_and_points():
    pct, pts = stats.relative_improvement(np.array([[40.0, 50.0]]), np.array([[30.0, 40.0]]))
    assert pts == pytest.approx(10.0) and pct == pytest.approx(100 * 10 / 35)


def test_performance_profile_known_answer():
    scores = np.array([[10.0, 20.0], [30.0, 40.0]])
    prof, ci = stats.performance_profile({"a": scores}, taus=[0, 15, 35, 50], reps=200)["a"]
    np.testing.assert_allclose(prof, [1.0, 0.75, 0.25, 0.0])
    assert ci.shape == (2, 4)


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        stats.iqm({"a": np.array([[1.0, np.nan]])})
    with pytest.raises(ValueError, match="matrix"):
        stats.iqm({"a": np.array([1.0, 2.0])})


def test_vectorised_interval_agrees_with_rliable():
    from rliable import library as rly
    from rliable import metrics

    rng = np.random.default_rng(1)
    x, y = rng.normal(1.0, 1.0, (6, 3)), rng.normal(0.0, 1.0, (5, 3))
    ours = stats.probability_of_improvement(x, y, reps=4000)
    np.random.seed(0)
    _, ci = rly.get_interval_estimates({"p": (x, y)}, metrics.probability_of_improvement, reps=4000)
    low, high = np.asarray(ci["p"]).reshape(2)
    assert ours.point == pytest.approx(float(metrics.probability_of_improvement(x, y)))
    assert ours.low == pytest.approx(low, abs=0.04) and ours.high == pytest.approx(high, abs=0.04)
