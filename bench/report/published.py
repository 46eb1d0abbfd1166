"""Published numbers beside measured ones.

`paper_tables.csv` (vendored from the project's shared reference, one row per (table, dataset, algo, augmenter)
with its source) holds figures to print beside measured ones, never inputs to a computation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TABLE = Path(__file__).with_name("paper_tables.csv")


def published() -> pd.DataFrame:
    return pd.read_csv(TABLE)


def paper_name(dataset: str, has_tasks: bool) -> str:
    """The name the papers use: 'minari:mujoco/hopper/medium-v0' -> 'hopper-medium' (D4RL);
    an OGBench dataset run as a singletask task group -> '...-singletask-v0' (DROL's rows)."""
    if dataset.startswith("minari:"):
        parts = dataset.split(":", 1)[1].split("/")
        if len(parts) == 3:
            return f"{parts[1]}-{parts[2].rsplit('-v', 1)[0]}"
        return dataset
    if has_tasks and dataset.endswith("-v0"):
        return dataset[: -len("-v0")] + "-singletask-v0"
    return dataset


def measured_interval(values: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean over seeds (a single seed gives a point)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float(v.mean())
    rng = np.random.default_rng(seed)
    means = rng.choice(v, size=(reps, len(v)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def compare(frame: pd.DataFrame, metric: str = "score_last3_mean") -> pd.DataFrame:
    """One row per measured (dataset, algo, augmenter) that a paper also reports."""
    done = frame[frame["status"] == "done"].copy()
    if done.empty:
        return pd.DataFrame()
    done["has_tasks"] = done["task"].notna() if "task" in done else False
    per_seed = done.groupby(["dataset", "algo", "augmenter", "has_tasks", "seed"], as_index=False)[metric].mean()
    pub = published()
    rows = []
    for (dataset, algo, aug, has_tasks), g in per_seed.groupby(["dataset", "algo", "augmenter", "has_tasks"]):
        name = paper_name(dataset, bool(has_tasks))
        hits = pub[(pub["dataset"] == name) & (pub["algo"] == algo) & (pub["augmenter"] == aug)]
        if hits.empty:
            continue
        lo, hi = measured_interval(g[metric].to_numpy())
        measured = float(g[metric].mean())
        for _, h in hits.iterrows():
            rows.append({"dataset": dataset, "algo": algo, "augmenter": aug, "source": h["source"],
                         "published": h["mean"], "published_spread": f"{h['spread']} ({h['spread_kind']})",
                         "measured": measured, "ci_low": lo, "ci_high": hi, "seeds": len(g),
                         "difference": measured - float(h["mean"]),
                         "inside_95ci": bool(lo <= float(h["mean"]) <= hi)})
    return pd.DataFrame(rows)
