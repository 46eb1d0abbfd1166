"""Paper-layout tables on a synthetic results frame with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.report import tables


def frame() -> pd.DataFrame:
    rows = []

    def add(dataset, algo, aug, seed, score, task=None):
        rows.append(dict(status="done", dataset=dataset, task=task, algo=algo, augmenter_label=aug, seed=seed,
                         score_last3_mean=score))

    for seed, (a, b, c) in enumerate([(10, 20, 30), (12, 22, 26)]):
        add("pointmaze-medium-stitch-v0", "iql", "none", seed, a)
        add("pointmaze-medium-stitch-v0", "iql", "noise", seed, b)
        add("pointmaze-medium-stitch-v0", "iql", "ser", seed, c)
        add("pointmaze-large-stitch-v0", "iql", "none", seed, a + 40)
        add("pointmaze-large-stitch-v0", "iql", "noise", seed, b)
        add("pointmaze-large-stitch-v0", "iql", "ser", seed, c)
        add("pointmaze-medium-stitch-v0", "dt", "none", seed, 5.0)
    # a task group: two tasks per seed are averaged first
    add("minari:mujoco/hopper/medium-v0", "iql", "none", 0, 50.0)
    add("minari:mujoco/hopper/medium-v0", "iql", "noise", 0, 40.0, task=1)
    add("minari:mujoco/hopper/medium-v0", "iql", "noise", 0, 60.0, task=2)
    add("minari:mujoco/hopper/medium-v0", "iql", "ser", 0, 10.0)
    rows.append(dict(status="not applicable", dataset="pointmaze-medium-stitch-v0", algo="dt",
                     augmenter_label="noise", seed=0))
    rows.append(dict(status="failed", dataset="pointmaze-medium-stitch-v0", algo="dt", augmenter_label="ser",
                     seed=0, score_last3_mean=999.0))
    return pd.DataFrame(rows)


def test_layout_values_ranks_and_group_average():
    m, s, ranks, seeds = tables.build(frame())
    key = ("pointmaze", "pointmaze-medium-stitch-v0")
    assert m.loc[key, ("iql", "none")] == 11.0 and s.loc[key, ("iql", "none")] == pytest.approx(2 ** 0.5)
    assert m.loc[key, ("iql", "ser")] == 28.0
    assert ranks.loc[key, ("iql", "ser")] == 1 and ranks.loc[key, ("iql", "noise")] == 2
    assert ranks.loc[key, ("iql", "none")] == 0
    large = ("pointmaze", "pointmaze-large-stitch-v0")
    assert ranks.loc[large, ("iql", "none")] == 1  # 51 beats 28 and 21
    avg = ("pointmaze", "pointmaze average")
    assert m.loc[avg, ("iql", "none")] == pytest.approx((11 + 51) / 2)
    assert pd.isna(m.loc[key, ("dt", "noise")])  # not applicable
    hopper = ("hopper", "minari:mujoco/hopper/medium-v0")
    assert m.loc[hopper, ("iql", "noise")] == 50.0  # tasks averaged within the seed
    assert ranks.loc[hopper, ("iql", "none")] == 1 and ranks.loc[hopper, ("iql", "noise")] == 1  # a tie shares
    assert seeds.loc[key] == 2 and seeds.loc[hopper] == 1
    assert ("hopper", "hopper average") not in m.index  # one dataset: no average row


def test_markdown_marks_best_second_and_not_applicable():
    md = tables.to_markdown(frame())
    line = next(ln for ln in md.splitlines() if ln.startswith("| pointmaze-medium-stitch-v0"))
    assert "**28.0 ± 2.8**" in line and "<u>21.0 ± 1.4</u>" in line and "| -" in line
    assert "999" not in md  # failed runs never enter a cell
    assert "pointmaze average" in md and "std over seeds" in md


def test_latex_is_booktabs_with_multicolumn_header():
    tex = tables.to_latex(frame())
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\multicolumn" in tex and r"\textbf{28.0 $\pm$ 2.8}" in tex and r"\underline{21.0 $\pm$ 1.4}" in tex
    assert tex.count(r"\begin{tabular}") == 1 and tex.count(r"\end{tabular}") == 1
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    for row in body.strip().splitlines():
        assert row.count("&") == tex.split("\n")[0].count("c") , row


def test_latex_compiles_with_a_real_tex_engine(tmp_path):
    """pdflatex on the table, with labels that need escaping.  CI installs TeX Live from Debian's packages
    (AUGBENCH_REQUIRE_TEX=1 there, so a missing engine fails instead of skipping)."""
    import os
    import shutil
    import subprocess

    exe = shutil.which("pdflatex")
    if exe is None:
        if os.environ.get("AUGBENCH_REQUIRE_TEX"):
            pytest.fail("AUGBENCH_REQUIRE_TEX is set but pdflatex is not on PATH")
        pytest.skip("no pdflatex here (.ci/run installs texlive-latex-base and texlive-latex-recommended)")
    f = frame()
    f.loc[f.augmenter_label == "ser", "augmenter_label"] = "ser_v2 & 50%"
    f.loc[f.algo == "dt", "algo"] = "td3_bc#1"
    tex = tables.to_latex(f)
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex +
                   "\n\\end{document}\n")
    res = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
