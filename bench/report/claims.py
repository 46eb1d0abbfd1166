"""'What the papers claim, and what this study finds': each paper's headline claim, tested on a study's runs.

A claim compares one augmenter's runs with another's (usually `none`) for one trainer, paired by (dataset, task,
seed): the difference in the report's metric is averaged over the pairs, with a 95% percentile-bootstrap interval
over them (10,000 resamples, a seeded generator).  The verdict is mechanical and states its rule:
- an "improves" claim is *supported* when the interval lies above 0, *contradicted* when it lies below 0 or the
  point estimate is not above 0 while the interval excludes any gain larger than 5 points, and *cannot tell*
  otherwise (too few seeds, or every run at the ceiling or the floor);
- a "matches" claim (SynthER) is *supported* when the interval lies inside +-5 points, *contradicted* when it
  excludes 0, *cannot tell* otherwise;
- ASTRO's DVR claim compares the two augmenters' DVR, averaged over their distinct augmentations, with the same
  bootstrap over augmentation seeds, on this harness's definition (bench/dvr.py), which is not the paper's.
No verdict from fewer than 3 pairs (seeds).  Every claim names the reduced settings it was measured under by pointing at the report's header; a claim whose
augmenters or trainers the study did not run says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MARGIN = 5.0  # points: the smallest difference that counts as a gain / a mismatch
RESAMPLES = 10_000
MIN_PAIRS = 3  # fewer pairs (seeds) give a bootstrap interval that is only the range of the values: no verdict


@dataclass(frozen=True)
class Claim:
    paper: str
    text: str
    kind: str  # "improves" | "matches" | "dvr_lower"
    augmenter: tuple[str, str | None]  # (augmenter name, mix mode or None for any)
    baseline: tuple[str, str | None]
    algos: tuple[str, ...]


CLAIMS = [
    Claim("DiffStitch (Li et al., ICML 2024)", "stitching improves IQL", "improves", ("diffstitch", None),
          ("none", None), ("iql",)),
    Claim("DiffStitch (Li et al., ICML 2024)", "stitching improves TD3+BC", "improves", ("diffstitch", None),
          ("none", None), ("td3bc",)),
    Claim("ASTRO (arXiv 2511.23442)", "ASTRO improves over prior augmenters (+32.7 %; here: over DiffStitch)",
          "improves", ("astro", None), ("diffstitch", None), ("iql", "td3bc", "cql")),
    Claim("ASTRO (arXiv 2511.23442)", "ASTRO's data violates the dynamics less than prior augmenters' "
          "(7.7 % vs 21.1 % on its own definition; here: vs DiffStitch, on ours)", "dvr_lower", ("astro", None),
          ("diffstitch", None), ()),
    Claim("SynthER (Lu et al., NeurIPS 2023)", "training on synthetic data alone matches training on the real data",
          "matches", ("ser", "synthetic"), ("none", None), ("iql", "td3bc")),
    Claim("TATU (Zhang et al., ECAI 2023)", "truncated rollouts improve TD3+BC", "improves", ("tatu", None),
          ("none", None), ("td3bc",)),
]


def _select(done: pd.DataFrame, who: tuple[str, str | None]) -> pd.DataFrame:
    """The runs of the method itself: its augmenter name (and mix mode), and among its labels the one named like
    the method, so that a study's ablations (`diffstitch-fixed-step`, ...) are not pooled into the method's claim.
    Where no label is the method's name, a single remaining label is the method (`ser-synthetic`); several are
    ambiguous and select nothing (the claim then reads 'not measured')."""
    name, mode = who
    rows = done[done["augmenter"] == name]
    if mode is not None and "config.mix.mode" in rows:
        rows = rows[rows["config.mix.mode"] == mode]
    elif mode is not None:
        rows = rows.iloc[:0]
    if "augmenter_label" in rows and rows["augmenter_label"].nunique() > 1:
        rows = rows[rows["augmenter_label"] == name]
    return rows


def bootstrap_mean(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5 %, 97.5 %) of the mean of `values` under a percentile bootstrap."""
    values = np.asarray(values, float)
    if len(values) == 1:
        return float(values[0]), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _verdict(kind: str, mean: float, lo: float, hi: float, n: int, ceiling: bool) -> str:
    if n < MIN_PAIRS or not np.isfinite(lo):
        return f"cannot tell (fewer than {MIN_PAIRS} pairs)"
    if kind == "matches":
        if -MARGIN <= lo and hi <= MARGIN:
            return "supports"
        if lo > 0 or hi < 0:
            return "contradicts"
        return "cannot tell"
    if lo > 0:
        return "supports"
    if ceiling:
        return "cannot tell (every run at the same score)"
    if hi < 0 or (mean <= 0 and hi < MARGIN):
        return "contradicts"
    return "cannot tell"


def _paired(done: pd.DataFrame, claim: Claim, metric: str) -> pd.DataFrame:
    a = _select(done, claim.augmenter)
    b = _select(done, claim.baseline)
    keys = ["dataset", "task", "algo", "seed"]
    a = a[a["algo"].isin(claim.algos)].groupby(keys, dropna=False)[metric].mean()
    b = b[b["algo"].isin(claim.algos)].groupby(keys, dropna=False)[metric].mean()
    return pd.concat({"a": a, "b": b}, axis=1).dropna()


def evaluate(done: pd.DataFrame, metric: str, dvr_col: str) -> pd.DataFrame:
    """One row per claim: what was compared, over how many pairs, the difference and its interval, the verdict."""
    rows = []
    for c in CLAIMS:
        row = {"paper": c.paper, "claim": c.text}
        label_a = c.augmenter[0] + (f" ({c.augmenter[1]})" if c.augmenter[1] else "")
        if c.kind == "dvr_lower":
            vals = {}
            for who in (c.augmenter, c.baseline):
                sel = _select(done, who)
                if dvr_col not in sel or "augmentation.cache_key" not in sel:
                    vals[who[0]] = np.zeros(0)
                    continue
                sel = sel.dropna(subset=[dvr_col]).drop_duplicates(subset=["augmentation.cache_key"])
                vals[who[0]] = sel[dvr_col].to_numpy(float) * 100
            if not len(vals[c.augmenter[0]]) or not len(vals[c.baseline[0]]):
                rows.append({**row, "compared": f"DVR: {label_a} vs {c.baseline[0]}", "n": 0,
                             "difference": "", "95% CI": "", "verdict": "not measured in this study"})
                continue
            (ma, la, ha), (mb, lb, hb) = bootstrap_mean(vals[c.augmenter[0]]), bootstrap_mean(vals[c.baseline[0]], 1)
            n = min(len(vals[c.augmenter[0]]), len(vals[c.baseline[0]]))
            if n < MIN_PAIRS:
                verdict = f"cannot tell (fewer than {MIN_PAIRS} augmentation seeds)"
            elif ha < lb:
                verdict = "supports"
            elif la > hb:
                verdict = "contradicts"
            else:
                verdict = "cannot tell"
            rows.append({**row, "compared": f"DVR %: {label_a} {ma:.1f} vs {c.baseline[0]} {mb:.1f}", "n": n,
                         "difference": f"{ma - mb:+.1f}", "95% CI": f"[{la:.1f}, {ha:.1f}] vs [{lb:.1f}, {hb:.1f}]",
                         "verdict": verdict})
            continue
        pairs = _paired(done, c, metric)
        compared = f"{'/'.join(c.algos)}: {label_a} vs {c.baseline[0]}"
        if pairs.empty:
            rows.append({**row, "compared": compared, "n": 0, "difference": "", "95% CI": "",
                         "verdict": "not measured in this study"})
            continue
        diff = (pairs["a"] - pairs["b"]).to_numpy(float)
        mean, lo, hi = bootstrap_mean(diff)
        ceiling = bool(np.all(pairs.to_numpy() == pairs.to_numpy().flat[0]))
        rows.append({**row, "compared": compared, "n": len(diff), "difference": f"{mean:+.1f}",
                     "95% CI": f"[{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else "(one pair)",
                     "verdict": _verdict(c.kind, mean, lo, hi, len(diff), ceiling)})
    return pd.DataFrame(rows)
