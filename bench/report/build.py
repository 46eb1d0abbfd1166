"""`bench report`: a study's results -> reports/NAME/ (index.md, tables, statistics, published vs measured, plots).

Each section is one function `section(ctx) -> str` that receives the context (results frame, curves, output
folder), writes its own files and returns the markdown that index.md shows for it.  Later issues add sections
(dynamics violation rate, pictures of generated data) by appending to SECTIONS.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.io import ensure_dir, write_bytes
from bench.report import published, stats, tables

METRIC = "score_last3_mean"


@dataclass
class Context:
    frame: pd.DataFrame  # one row per run, with a `status` column
    curves: pd.DataFrame
    out: Path
    source: str
    files: list[str] = field(default_factory=list)
    cache: dict = field(default_factory=dict)  # results sections share (score matrices, IQM estimates)

    @property
    def done(self) -> pd.DataFrame:
        return self.frame[self.frame["status"] == "done"]

    def write(self, name: str, text: str) -> str:
        write_bytes(self.out / name, text.encode())
        self.files.append(name)
        return name


def _save_fig(ctx: Context, fig, stem: str) -> str:
    import matplotlib.pyplot as plt

    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=150, bbox_inches="tight")
        write_bytes(ctx.out / f"{stem}.{ext}", buf.getvalue())
        ctx.files.append(f"{stem}.{ext}")
    plt.close(fig)
    return f"{stem}.png"


def main_table(ctx: Context) -> str:
    if ctx.done.empty:
        return "## Main table\n\nNo finished runs.\n"
    md = tables.to_markdown(ctx.frame, METRIC)
    ctx.write("table.md", md)
    ctx.write("table.tex", tables.to_latex(ctx.frame, METRIC))
    metric = ctx.done["metric"].iloc[0] if "metric" in ctx.done else "score"
    return f"## Main table ({metric}, mean of the last three evaluations)\n\n{md}\nLaTeX: [table.tex](table.tex)\n"


def _score_matrices(done: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """(algo, augmenter) -> (seeds, tasks) matrix, tasks = dataset x task; only complete rectangles."""
    out = {}
    d = done.assign(task_key=done["dataset"] + "/" + done["task"].astype(str))
    for (algo, aug), g in d.groupby(["algo", "augmenter_label"]):
        m = g.pivot_table(index="seed", columns="task_key", values=METRIC, aggfunc="mean").dropna()
        if not m.empty:
            out[algo, aug] = m
    return out


def _iqm(ctx: Context):
    """(score matrices, IQM estimates), computed once per report."""
    if "iqm" not in ctx.cache:
        mats = _score_matrices(ctx.done)
        ctx.cache["iqm"] = (mats, stats.iqm({f"{a}|{g}": m.to_numpy() for (a, g), m in mats.items()})
                            if mats else {})
    return ctx.cache["iqm"]


def statistics(ctx: Context) -> str:
    mats, iqm = _iqm(ctx)
    if not mats:
        return ""
    rows = []
    for (algo, aug), m in mats.items():
        e = iqm[f"{algo}|{aug}"]
        row = {"algo": algo, "augmenter": aug, "runs": m.size, "IQM": e.point, "IQM 95% CI": f"[{e.low:.1f}, {e.high:.1f}]"}
        base = mats.get((algo, "none"))
        if base is not None and aug != "none":
            cols = m.columns.intersection(base.columns)
            if len(cols) and min(len(m), len(base)) > 0:
                poi = stats.probability_of_improvement(m[cols].to_numpy(), base[cols].to_numpy())
                pct, pts = stats.relative_improvement(m[cols].to_numpy(), base[cols].to_numpy())
                row.update({"P(improve over none)": f"{poi.point:.2f} [{poi.low:.2f}, {poi.high:.2f}]",
                            "vs none (%)": f"{pct:+.1f}%" if np.isfinite(pct) else "n/a (none scores 0)",
                            "vs none (points)": f"{pts:+.2f}"})
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("")
    ctx.write("statistics.csv", frame.to_csv(index=False))
    return ("## Aggregate statistics (rliable: IQM over runs and tasks, 95% stratified bootstrap)\n\n"
            + frame.to_markdown(index=False, floatfmt=".1f") + "\n")


def published_vs_measured(ctx: Context) -> str:
    cmp = published.compare(ctx.frame, METRIC)
    if cmp.empty:
        return "## Published vs measured\n\nNo measured (dataset, algo, augmenter) is in the papers' tables.\n"
    ctx.write("published_vs_measured.csv", cmp.to_csv(index=False))
    return ("## Published vs measured\n\n" + cmp.to_markdown(index=False, floatfmt=".1f")
            + "\n\n`inside_95ci`: the published mean lies inside the measured mean's 95% bootstrap interval.\n")


def metric_range(values) -> tuple[float, float]:
    """Axis limits on the metric's own scale: 0-100 (success rate in %, normalised score), widened only where a
    value lies outside (a D4RL normalised score can exceed 100 or fall below 0), so that a study of zeros shows
    flat lines at 0 rather than an axis autoscaled to +-0.04.  Padded by 2 % at both ends, so that a line at 0 or
    100 stands clear of the frame instead of hiding in it."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    lo, hi = (min(0.0, float(v.min())), max(100.0, float(v.max()))) if len(v) else (0.0, 100.0)
    pad = 0.02 * (hi - lo)
    return lo - pad, hi + pad


def plots(ctx: Context) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    done = ctx.done
    if done.empty:
        return ""
    sns.set_theme(style="whitegrid", palette="colorblind", context="paper")
    links = []
    g = sns.catplot(data=done, x="dataset", y=METRIC, hue="augmenter_label", col="algo", kind="bar",
                    errorbar=("ci", 95), height=3.2, aspect=1.2, sharey=True)
    g.set_axis_labels("", "score (mean of last 3 evaluations)")
    g.set(ylim=metric_range(done[METRIC]))
    g.set_xticklabels(rotation=20, ha="right")
    links.append(("Scores per dataset (95% CI over seeds)", _save_fig(ctx, g.figure, "scores")))

    mats, iqm = _iqm(ctx)
    fig, ax = plt.subplots(figsize=(5, 0.45 * len(iqm) + 1))
    keys = sorted(iqm)
    pts = [iqm[k].point for k in keys]
    err = np.array([[iqm[k].point - iqm[k].low for k in keys], [iqm[k].high - iqm[k].point for k in keys]])
    ax.errorbar(pts, range(len(keys)), xerr=err, fmt="o", color=sns.color_palette("colorblind")[0], capsize=3)
    ax.set_yticks(range(len(keys)), [k.replace("|", " / ") for k in keys])
    ax.set_xlabel("IQM (95% stratified bootstrap CI)")
    ax.set_xlim(*metric_range(np.concatenate([pts, [iqm[k].low for k in keys], [iqm[k].high for k in keys]])))
    links.append(("IQM per algo and augmenter", _save_fig(ctx, fig, "iqm")))

    if not ctx.curves.empty:
        cur = ctx.curves.merge(done[["run_id", "algo", "augmenter_label"]], on="run_id")
        # a dash pattern as well as a colour per augmenter: curves that coincide (all at 100, all at 0) stay
        # distinguishable
        g = sns.relplot(data=cur, x="step", y="score", hue="augmenter_label", style="augmenter_label",
                        col="algo", kind="line", errorbar=("ci", 95), height=3, aspect=1.2)
        g.set_axis_labels("gradient steps", "score")
        g.set(ylim=metric_range(cur["score"]))
        links.append(("Learning curves", _save_fig(ctx, g.figure, "curves")))

    allv = np.concatenate([m.to_numpy().ravel() for m in mats.values()])
    taus = np.linspace(*metric_range(allv), 41)
    prof = stats.performance_profile({f"{a}|{b}": m.to_numpy() for (a, b), m in mats.items()}, taus)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (k, (p, ci)) in enumerate(sorted(prof.items())):
        color = sns.color_palette("colorblind")[i % 10]
        ax.plot(taus, p, label=k.replace("|", " / "), color=color, linestyle=["-", "--", ":", "-."][i % 4])
        ax.fill_between(taus, ci[0], ci[1], color=color, alpha=0.15)
    ax.set_xlabel("score threshold tau")
    ax.set_ylabel("fraction of runs above tau")
    ax.legend(fontsize=6)
    links.append(("Performance profiles", _save_fig(ctx, fig, "profiles")))
    return "## Plots\n\n" + "\n".join(f"- [{title}]({name}) ([PDF]({name[:-4]}.pdf))" for title, name in links) + "\n"


DVR_COL = "augmentation.dvr.dvr"


def dynamics_violation(ctx: Context) -> str:
    """DVR per dataset x augmenter over the distinct augmentations (one per augmentation seed), with a 95%
    Student-t interval over those seeds, error quantiles and GTA's Dynamic MSE (definition: bench/dvr.py)."""
    from scipy import stats as st

    done = ctx.done
    if DVR_COL not in done or done[DVR_COL].isna().all():
        return ""
    cols = {"augmentation.dvr.error_quantiles.50": "error q50", "augmentation.dvr.error_quantiles.90": "error q90",
            "augmentation.dvr.error_quantiles.99": "error q99", "augmentation.dvr.gta_dynamic_mse": "GTA dyn. MSE",
            "augmentation.dvr.invalid_states": "invalid states", "augmentation.dvr.checked": "rows checked"}
    have = [c for c in cols if c in done]
    checked = done.dropna(subset=[DVR_COL])
    # Labels that share one augmentation (SER synthetic-only and 50/50 mix the same samples) are named together.
    shared = checked.groupby("augmentation.cache_key")["augmenter_label"].agg(lambda s: ", ".join(sorted(set(s))))
    augs = (checked.drop_duplicates(subset=["augmentation.cache_key"])  # one row per distinct augmentation
            [["dataset", "task", "augmentation.cache_key", "seed", DVR_COL, *have]])
    augs["augmenter_label"] = augs["augmentation.cache_key"].map(shared)
    augs["task_key"] = augs["dataset"] + augs["task"].map(lambda t: "" if pd.isna(t) else f" task {int(t)}")
    rows = []
    for (task_key, label), g in augs.groupby(["task_key", "augmenter_label"], sort=True):
        rates = g[DVR_COL].to_numpy(float) * 100
        mean = rates.mean()
        if len(rates) > 1:
            half = st.t.ppf(0.975, len(rates) - 1) * rates.std(ddof=1) / np.sqrt(len(rates))
            ci = f"[{max(0.0, mean - half):.2f}, {min(100.0, mean + half):.2f}]"
        else:
            ci = "(one seed)"
        row = {"dataset": task_key, "augmenter": label, "DVR %": round(mean, 2), "95% CI": ci,
               "aug. seeds": len(rates)}
        counts = ("augmentation.dvr.invalid_states", "augmentation.dvr.checked")  # shown as whole numbers
        for c in have:
            mean = float(g[c].astype(float).mean())
            row[cols[c]] = int(round(mean)) if c in counts else mean
        rows.append(row)
    table = pd.DataFrame(rows)
    ctx.write("dvr.csv", table.to_csv(index=False))

    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    plot = augs.assign(dvr=augs[DVR_COL].astype(float) * 100)
    g = sns.catplot(data=plot, x="augmenter_label", y="dvr", col="task_key", kind="bar", errorbar=("ci", 95),
                    height=3, aspect=1.1, sharey=True)
    g.set_axis_labels("", "DVR (%)")
    g.set(ylim=(0, 100))
    name = _save_fig(ctx, g.figure, "dvr")
    return ("## Dynamics Violation Rate (true simulator)\n\n"
            "Share of generated transitions whose next state differs from the simulator's by more than the "
            "tolerance (0.1 std of the original data's state change, in any dimension; states in walls or "
            "non-finite count as violations). Mean over the distinct augmentations (augmentation seeds), 95% "
            "Student-t interval over them; errors in stds of the state change. Definition: README, "
            "`bench/dvr.py`.\n\n" + table.to_markdown(index=False, floatfmt=".3g")
            + f"\n\n[DVR bar plot]({name}) ([PDF]({name[:-4]}.pdf))\n")


def generated_data(ctx: Context) -> str:
    """The maze with each augmenter's generated data drawn on it (point mazes only): one panel per augmenter, from
    its first augmentation seed in this machine's cache, beside the original data.  Each panel's sampled points are
    stored beside the picture (`<picture>-points.npz`, a few KB), so a rebuild on a machine without an
    augmentation redraws that panel from the stored sample and still adds the panels it can draw anew."""
    done = ctx.done
    if "augmentation.cache_key" not in done or done.empty:
        return ""
    from bench import data
    from bench.augment import cache_path
    from bench.dataset import load as load_file

    lines, missing = [], []
    for (name, task), g in done.groupby(["dataset", "task"], sort=True, dropna=False):
        task = None if pd.isna(task) else int(task)
        try:
            original = data.load(name, task)
        except Exception:  # noqa: BLE001  (not on this machine: the section says so)
            missing.append(f"{name} (dataset not on this machine)")
            continue
        if "pointmaze" not in (original.meta.simulator.env_id or ""):
            continue
        stem = f"generated-{name}" + (f"-task{task}" if task else "")
        stored = _stored_points(ctx.out / f"{stem}-points.npz")
        if not stored and (ctx.out / f"{stem}.png").exists():
            stored = None  # drawn before points were stored: the old picture is kept whole if a panel is absent
        panels, absent, reused = [_panel("original data", "original data", original)], [], []
        for label, h in g.groupby("augmenter_label", sort=True):
            h = h.dropna(subset=["augmentation.cache_key"]).sort_values("seed")
            if h.empty or label == "none":
                continue
            paths = [(int(seed), cache_path(str(key))) for seed, key in zip(h["seed"], h["augmentation.cache_key"])]
            here = [(seed, path) for seed, path in paths if path.exists()]  # the first seed this machine has
            if here:
                panels.append(_panel(label, f"{label} (seed {here[0][0]})", load_file(here[0][1])))
            elif stored and label in stored:
                panels.append(stored[label])
                reused.append(label)
            else:
                absent.append(label)
        if absent and stored is None:  # an old picture without stored points: kept, not redrawn with less
            ctx.files += [f"{stem}.png", f"{stem}.pdf"]
            lines.append(f"![{stem}]({stem}.png)\n\n(Kept from an earlier build of this report: this machine's "
                         f"cache lacks the augmentation of {', '.join(absent)}.)")
            continue
        missing += [f"{name} / {label} (augmentation not in this machine's cache)" for label in absent]
        if len(panels) == 1:
            continue
        lines.append(f"![{stem}]({_draw_panels(ctx, stem, original.meta, panels)})")
        if reused:
            lines.append(f"(Panels of {', '.join(reused)} drawn from the sample an earlier build stored: this "
                         "machine's cache lacks their augmentation.)")
    if not lines and not missing:
        return ""
    note = ("\n\nNot drawn: " + "; ".join(missing) + ".") if missing else ""
    return ("## Generated data on the maze\n\nStates of up to 3,000 transitions per panel (a seeded sample), the "
            "original data first, then each augmenter's generated data (the first augmentation seed in the cache).\n\n"
            + "\n\n".join(lines) + note + "\n")


MAX_POINTS = 3000  # drawn per panel


def _panel(label: str, title: str, ds) -> dict:
    """One panel: a seeded sample (seed from the label, so it does not move when panels are added) of the states."""
    import zlib

    xy = np.asarray(ds.observations)[:, :2]
    if len(xy) > MAX_POINTS:
        rng = np.random.default_rng(zlib.crc32(label.encode()))
        xy = xy[np.sort(rng.choice(len(xy), MAX_POINTS, replace=False))]
    return {"label": label, "title": title, "n": len(ds), "xy": np.asarray(xy, np.float32)}


def _stored_points(path: Path) -> dict:
    if not path.exists():
        return {}
    with np.load(path) as f:
        return {str(label): {"label": str(label), "title": str(title), "n": int(n), "xy": f[f"xy{k}"]}
                for k, (label, title, n) in enumerate(zip(f["labels"], f["titles"], f["n"]))}


def _draw_panels(ctx: Context, stem: str, meta, panels: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.data.show import draw_points_on_maze

    cols = min(4, len(panels))
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.axis("off")
            continue
        draw_points_on_maze(ax, meta, panels[k]["xy"], max_points=MAX_POINTS)
        ax.set_title(f"{panels[k]['title']}\n{panels[k]['n']:,} transitions", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    np.savez_compressed(buf, labels=np.array([p["label"] for p in panels]),
                        titles=np.array([p["title"] for p in panels]), n=np.array([p["n"] for p in panels]),
                        **{f"xy{k}": p["xy"] for k, p in enumerate(panels)})
    write_bytes(ctx.out / f"{stem}-points.npz", buf.getvalue())
    ctx.files.append(f"{stem}-points.npz")
    return _save_fig(ctx, fig, stem)


def paper_claims(ctx: Context) -> str:
    """Each paper's headline claim against this study's runs (bench/report/claims.py states the rules)."""
    from bench.report import claims

    if ctx.done.empty:
        return ""
    table = claims.evaluate(ctx.done, METRIC, DVR_COL)
    ctx.write("claims.csv", table.to_csv(index=False))
    return ("## What the papers claim, and what this study finds\n\n"
            "Each claim compares the runs of two augmenters for the named trainers, paired by dataset, task and "
            "seed: the mean difference in the metric above, a 95% percentile-bootstrap interval over the pairs, "
            f"and a verdict by a fixed rule (an improvement is supported when the interval lies above 0; a match "
            f"when it lies within +-{claims.MARGIN:g} points; `bench/report/claims.py`). Measured under this "
            "study's settings (header above), reduced where the study says so; the papers' own settings differ.\n\n"
            + table.to_markdown(index=False) + "\n")


SECTIONS = [main_table, statistics, published_vs_measured, dynamics_violation, paper_claims, generated_data, plots]


def _header(ctx: Context) -> str:
    counts = ctx.frame["status"].value_counts().to_dict()
    done = ctx.done
    lines = [f"# Report: {ctx.source}", ""]
    missing = {k: v for k, v in counts.items() if k not in ("done", "not applicable")}
    if missing:
        lines += [f"> **Incomplete results:** {', '.join(f'{v} {k}' for k, v in sorted(missing.items()))} of "
                  f"{sum(counts.values())} runs; the figures below use the {counts.get('done', 0)} finished runs "
                  "only.", ""]
    if not done.empty:
        first = done.iloc[0]
        versions = {k.split(".", 1)[1]: first[k] for k in done.columns if k.startswith("versions.")}
        commits = sorted(set(done.get("git.commit", pd.Series(dtype=str)).dropna()))
        devices = sorted(set(done.get("device_name", pd.Series(dtype=str)).dropna()))
        lines += [f"Study: `{ctx.source}`. Runs: {counts.get('done', 0)} finished, "
                  f"{counts.get('not applicable', 0)} not applicable ('-').",
                  f"Commit(s): {', '.join(c[:12] for c in commits) or 'unknown'}"
                  + (" (some runs from a dirty tree)" if done.get("git.dirty", pd.Series([False])).any() else "")
                  + f". Device(s): {', '.join(devices) or 'unknown'}.",
                  "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".", ""]
        lines += _generations(done)
    return "\n".join(lines)


def _generations(done: pd.DataFrame) -> list[str]:
    """A note for each dataset whose runs trained on more than one generation of it (data generated here is
    bitwise machine-dependent; the archive matches such runs by recipe: bench/sweep/archive.py)."""
    col = "config.dataset.content_hash"
    if col not in done.columns:
        return []
    out = []
    for name, g in done.groupby("dataset", sort=True):
        counts = g[col].dropna().value_counts()
        if len(counts) > 1:
            parts = ", ".join(f"{h[:8]} ({n} runs)" for h, n in sorted(counts.items()))
            out.append(f"> **Data generations:** the runs on {name} trained on {len(counts)} bitwise-different "
                       f"generations of it, each from the same generator config and seed on another machine "
                       f"(floating point differs across CPUs): content hashes {parts}.")
    return out + [""] if out else []


def build_report(frame: pd.DataFrame, curves: pd.DataFrame, out: Path, source: str) -> Path:
    ensure_dir(out)
    ctx = Context(frame=frame, curves=curves, out=out, source=source)
    body = [section(ctx) for section in SECTIONS]
    index = _header(ctx) + "\n" + "\n".join(b for b in body if b)
    files = [f for f in ctx.files if not f.endswith(".pdf")]
    index += "\n## Files\n\n" + "\n".join(f"- [{f}]({f})" for f in files) + "\n"
    write_bytes(out / "index.md", index.encode())
    return out / "index.md"


def load(source: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """A study file (collected first) or a collected parquet -> (runs frame, curves frame, name)."""
    source = Path(source)
    if source.suffix in (".yaml", ".yml"):
        from bench import collect, sweep

        study, runs = sweep.expand(source)
        runs_path, curves_path, _ = collect.collect(study.name, runs, sweep.archive_of(study))
        return pd.read_parquet(runs_path), pd.read_parquet(curves_path), str(source)
    if source.suffix == ".parquet":
        from bench.errors import BenchError

        if not source.exists():
            raise BenchError(f"{source}: no such results file")
        curves = source.with_name(source.stem + "-curves.parquet")

        def read(p: Path) -> pd.DataFrame:
            try:
                return pd.read_parquet(p)
            except Exception as e:  # noqa: BLE001  (pyarrow's ArrowInvalid, OSError, ...)
                raise BenchError(f"{p}: not a readable results file ({type(e).__name__}: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); collect the study "
                                 f"again with `bench collect`") from None

        return read(source), read(curves) if curves.exists() else pd.DataFrame(), str(source)
    from bench.errors import BenchError

    raise BenchError(f"{source}: give a study file (.yaml) or a collected results file (.parquet)")

