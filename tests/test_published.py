"""Published versus measured: name mapping, matching and the interval check."""

from __future__ import annotations

import pandas as pd

from bench.report import published


def test_paper_names():
    assert published.paper_name("minari:mujoco/halfcheetah/medium-expert-v0", False) == "halfcheetah-medium-expert"
    assert published.paper_name("antmaze-large-navigate-v0", True) == "antmaze-large-navigate-singletask-v0"
    assert published.paper_name("pointmaze-medium-navigate-v0", False) == "pointmaze-medium-navigate-v0"


def test_compare_matches_rows_and_checks_the_interval():
    rows = [dict(status="done", dataset="minari:mujoco/halfcheetah/medium-expert-v0", task=None, algo="iql",
                 augmenter="none", seed=s, score_last3_mean=v) for s, v in enumerate([90.0, 92.0, 95.0])]
    rows += [dict(status="done", dataset="minari:mujoco/halfcheetah/medium-expert-v0", task=None, algo="iql",
                  augmenter="ser", seed=s, score_last3_mean=v) for s, v in enumerate([50.0, 51.0])]
    rows += [dict(status="done", dataset="toy-maze", task=1, algo="iql", augmenter="none", seed=0,
                  score_last3_mean=3.0)]
    out = published.compare(pd.DataFrame(rows))
    none = out[(out["augmenter"] == "none") & (out["source"].str.startswith("DiffStitch"))].iloc[0]
    assert none["published"] == 92.7 and none["measured"] == (90 + 92 + 95) / 3 and none["seeds"] == 3
    assert none["inside_95ci"] and none["ci_low"] <= 92.7 <= none["ci_high"]
    ser = out[out["augmenter"] == "ser"].iloc[0]
    assert ser["published"] == 88.9 and not ser["inside_95ci"]
    assert ser["difference"] == 50.5 - 88.9
    assert "toy-maze" not in set(out["dataset"])
