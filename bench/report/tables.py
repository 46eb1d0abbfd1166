"""Paper-layout tables (the layout of DiffStitch's Table 1) from a collected results frame, built with pandas.

Rows: datasets (a singletask task group is one row: per seed, the mean over its tasks), grouped by domain with a
domain-average row; columns: algo x augmenter; cells: mean ± std over seeds (sample std, ddof=1); per row and
algo the best augmenter in bold and the second underlined; '-' where the pair does not apply; a seeds column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPREAD = "std over seeds (ddof=1)"


def domain_of(dataset: str) -> str:
    """'minari:mujoco/hopper/medium-v0' -> 'hopper'; 'pointmaze-medium-navigate-v0' -> 'pointmaze'."""
    name = dataset.split(":", 1)[-1]
    if "/" in name:
        parts = name.split("/")
        return parts[1] if len(parts) > 2 else parts[0]
    return name.split("-")[0] if name.count("-") >= 2 else name


def cell_stats(frame: pd.DataFrame, metric: str = "score_last3_mean") -> pd.DataFrame:
    """One row per (dataset, algo, augmenter): mean, std over seeds, seeds; plus not-applicable pairs."""
    done = frame[frame["status"] == "done"]
    per_seed = done.groupby(["dataset", "algo", "augmenter_label", "seed"], as_index=False)[metric].mean()
    stats = per_seed.groupby(["dataset", "algo", "augmenter_label"])[metric].agg(
        mean="mean", std=lambda s: float(s.std(ddof=1)) if len(s) > 1 else np.nan, seeds="count").reset_index()
    na = frame[frame["status"] == "not applicable"][["dataset", "algo", "augmenter_label"]].drop_duplicates()
    na = na.merge(stats[["dataset", "algo", "augmenter_label"]], how="left", indicator=True)
    na = na[na["_merge"] == "left_only"].drop(columns="_merge").assign(mean=np.nan, std=np.nan, seeds=0)
    return pd.concat([stats, na], ignore_index=True)


def _ranks(values: pd.Series) -> pd.Series:
    """1 for the best, 2 for the second, 0 otherwise (ties share the better rank)."""
    order = values.dropna().sort_values(ascending=False).unique()
    return values.map(lambda v: 1 if len(order) > 0 and v == order[0] else
                      2 if len(order) > 1 and v == order[1] else 0)


def build(frame: pd.DataFrame, metric: str = "score_last3_mean", digits: int = 1):
    """(numbers, ranks, seeds): numeric mean/std frames and rank frame, index (domain, dataset) plus average rows,
    columns MultiIndex (algo, augmenter)."""
    cells = cell_stats(frame, metric)
    cells["domain"] = cells["dataset"].map(domain_of)
    keyed = cells.set_index(["domain", "dataset", "algo", "augmenter_label"])
    mean = keyed["mean"].unstack(["algo", "augmenter_label"]).sort_index(axis=1)
    std = keyed["std"].unstack(["algo", "augmenter_label"]).reindex(columns=mean.columns)
    seeds = cells.groupby(["domain", "dataset"])["seeds"].max()
    rows_m, rows_s, index, seed_col = [], [], [], []
    for domain, block in mean.groupby(level=0, sort=True):
        for key in block.index:
            rows_m.append(mean.loc[key])
            rows_s.append(std.loc[key])
            index.append(key)
            seed_col.append(int(seeds.loc[key]))
        if len(block) > 1:
            rows_m.append(block.mean(axis=0, skipna=False))
            rows_s.append(pd.Series(np.nan, index=block.columns))
            index.append((domain, f"{domain} average"))
            seed_col.append(int(seeds.loc[block.index].min()))
    idx = pd.MultiIndex.from_tuples(index, names=["domain", "dataset"])
    m = pd.DataFrame(rows_m, index=idx)
    s = pd.DataFrame(rows_s, index=idx)
    ranks = pd.DataFrame(0, index=idx, columns=m.columns)
    for algo in m.columns.get_level_values(0).unique():
        cols = [c for c in m.columns if c[0] == algo]
        ranks[cols] = m[cols].apply(_ranks, axis=1)
    return m, s, ranks, pd.Series(seed_col, index=idx, name="seeds")


def _format(m, s, ranks, seeds, digits: int, kind: str) -> pd.DataFrame:
    pm = " ± " if kind == "md" else r" $\pm$ "
    out = pd.DataFrame(index=m.index, columns=m.columns, dtype=object)
    for key in m.index:
        for col in m.columns:
            v, e, r = m.loc[key, col], s.loc[key, col], ranks.loc[key, col]
            if pd.isna(v):
                out.loc[key, col] = "-"
                continue
            text = f"{v:.{digits}f}" + ("" if pd.isna(e) else f"{pm}{e:.{digits}f}")
            if r == 1:
                text = f"**{text}**" if kind == "md" else rf"\textbf{{{text}}}"
            elif r == 2:
                text = f"<u>{text}</u>" if kind == "md" else rf"\underline{{{text}}}"
            out.loc[key, col] = text
    out[("", "seeds")] = seeds.astype(str)
    return out


def to_markdown(frame: pd.DataFrame, metric: str = "score_last3_mean", digits: int = 1) -> str:
    m, s, ranks, seeds = build(frame, metric)
    table = _format(m, s, ranks, seeds, digits, "md")
    table.columns = [f"{a} / {b}" if a else b for a, b in table.columns]
    table.index = [name for _, name in table.index]
    table.index.name = "dataset"
    return table.to_markdown() + f"\n\nCells: mean ± {SPREAD}; best per row and algo in bold, second underlined.\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(frame: pd.DataFrame, metric: str = "score_last3_mean", digits: int = 1) -> str:
    m, s, ranks, seeds = build(frame, metric)
    table = _format(m, s, ranks, seeds, digits, "tex")
    table.index = pd.Index([_tex_escape(name) for _, name in table.index], name="dataset")
    table.columns = pd.MultiIndex.from_tuples([(_tex_escape(a), _tex_escape(b)) for a, b in table.columns])
    return table.style.to_latex(hrules=True, multicol_align="c", column_format="l" + "c" * table.shape[1])
