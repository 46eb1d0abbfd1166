"""`bench report` on synthetic results and on a real (tiny) study with a failed run."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd

from bench.report.build import build_report


def synthetic() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows, curves = [], []
    for dataset in ("pointmaze-medium-stitch-v0", "pointmaze-large-stitch-v0"):
        for task in (1, 2):
            for algo in ("iql", "td3bc"):
                for aug, shift in (("none", 0.0), ("noise", 5.0)):
                    for seed in range(3):
                        rid = f"{dataset}{task}{algo}{aug}{seed}"
                        score = 40 + shift + rng.normal(0, 2)
                        rows.append(dict(status="done", run_id=rid, dataset=dataset, task=task, algo=algo,
                                         augmenter=aug, augmenter_label=aug, seed=seed, score_last3_mean=score,
                                         metric="success rate (%)", device_name="CPU", **{"git.commit": "abc",
                                         "git.dirty": False, "versions.d3rlpy": "2.8.1"}))
                        curves += [dict(run_id=rid, step=s, score=score * s / 300) for s in (100, 200, 300)]
    rows.append(dict(status="failed", run_id="x", dataset="pointmaze-medium-stitch-v0", task=1, algo="iql",
                     augmenter="noise", augmenter_label="noise", seed=9))
    return pd.DataFrame(rows), pd.DataFrame(curves)


def test_report_opens_on_the_table_and_flags_missing_runs(tmp_path):
    frame, curves = synthetic()
    index = build_report(frame, curves, tmp_path / "rep", "synthetic.yaml")
    text = index.read_text()
    assert text.startswith("# Report: synthetic.yaml")
    assert "**Incomplete results:** 1 failed of 49 runs" in text
    assert text.index("## Main table") < text.index("## Aggregate statistics") < text.index("## Plots")
    for name in ("table.md", "table.tex", "statistics.csv", "scores.png", "scores.pdf", "iqm.png", "curves.png",
                 "profiles.png", "profiles.pdf"):
        assert (tmp_path / "rep" / name).stat().st_size > 0, name
    stats = pd.read_csv(tmp_path / "rep" / "statistics.csv")
    noise = stats[(stats["algo"] == "iql") & (stats["augmenter"] == "noise")].iloc[0]
    assert noise["P(improve over none)"].startswith("1.00")  # noise is 5 points better on every task
    assert noise["IQM"] > stats[(stats["algo"] == "iql") & (stats["augmenter"] == "none")].iloc[0]["IQM"]


def test_complete_results_have_no_warning(tmp_path):
    frame, curves = synthetic()
    index = build_report(frame[frame["status"] == "done"], curves, tmp_path / "rep", "s.yaml")
    assert "Incomplete" not in index.read_text()


def test_report_command_on_a_study(tmp_path, toy_file, results):
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: reptest\ndatasets:\n  - {name: toy-maze, tasks: [1]}\naugmenters:\n  - {name: none}\n"
        "algos:\n  - {name: iql, config: {batch_size: 16, hidden_units: [32, 32]}}\nseeds: [0, 1]\n"
        "training: {steps: 10}\nevaluation: {episodes: 1}\nexecutor: {kind: debug}\n")
    run = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(study), "--only", "*/0"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    res = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(study), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "r" / "index.md").read_text()
    assert "**Incomplete results:** 1 pending of 2 runs" in text
    assert "| toy-maze" in res.stdout and "iql / none" in res.stdout  # the main table, printed
    bad = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(tmp_path / "nope.csv"), "--out",
                          str(tmp_path / "r2")], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and not (tmp_path / "r2").exists()


def test_dvr_section_known_answer(tmp_path):
    """DVR per dataset x augmenter over distinct augmentations (several algos share one), t interval over seeds."""
    frame, curves = synthetic()
    noise = (frame["augmenter"] == "noise") & (frame["status"] == "done")
    frame["augmentation.cache_key"] = frame["dataset"] + frame["task"].astype(str) + frame["augmenter"] + \
        frame["seed"].astype(str)
    frame.loc[noise, "augmentation.dvr.dvr"] = 0.30 + 0.02 * frame.loc[noise, "seed"]
    frame.loc[noise, "augmentation.dvr.error_quantiles.50"] = 0.5
    twin = frame[noise].assign(augmenter="noise-50/50", augmenter_label="noise-50/50")  # same data, mixed apart
    twin["run_id"] = twin["run_id"] + "-twin"
    frame = pd.concat([frame, twin], ignore_index=True)
    build_report(frame, curves, tmp_path / "rep", "s.yaml")
    table = pd.read_csv(tmp_path / "rep" / "dvr.csv")
    # none generated nothing: no DVR row; the twin shares noise's augmentations: one row naming both labels
    assert len(table) == 4 and set(table["augmenter"]) == {"noise, noise-50/50"}
    row = table[table["dataset"] == "pointmaze-medium-stitch-v0 task 1"].iloc[0]
    assert row["DVR %"] == 32.0 and row["aug. seeds"] == 3  # 3 augmentations, not 6 runs
    assert row["95% CI"] == "[27.03, 36.97]"  # 32 -+ t(0.975, 2) * 2 / sqrt(3)
    text = (tmp_path / "rep" / "index.md").read_text()
    assert "## Dynamics Violation Rate (true simulator)" in text and (tmp_path / "rep" / "dvr.png").exists()


def test_plots_use_the_metric_range():
    from bench.report.build import metric_range

    assert metric_range([0.0, 0.0, 0.0]) == (-2.0, 102.0)  # a study of zeros: flat at 0, clear of the frame
    assert metric_range([]) == (-2.0, 102.0)
    lo, hi = metric_range([-5.0, 110.0, float("nan")])  # D4RL scores may leave 0-100: widened, not clipped
    assert lo < -5.0 and hi > 110.0


def test_report_prints_the_dvr_table_and_draws_generated_data_on_the_maze(tmp_path, toy_file, results):
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: repgen\ndatasets:\n  - {name: toy-maze, tasks: [1]}\naugmenters:\n  - {name: none}\n"
        "  - {name: noise, config: {scale: 0.1, size: 0.2}}\n"
        "algos:\n  - {name: iql, config: {batch_size: 16, hidden_units: [32, 32]}}\nseeds: [0, 1]\n"
        "training: {steps: 10}\nevaluation: {episodes: 1}\nexecutor: {kind: debug}\n")
    run = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(study)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    res = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(study), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert "Dynamics Violation Rate" in res.stdout and "noise" in res.stdout
    text = (tmp_path / "r" / "index.md").read_text()
    assert "## Generated data on the maze" in text and "Not drawn" not in text
    assert (tmp_path / "r" / "generated-toy-maze-task1.png").stat().st_size > 10_000
    picture = (tmp_path / "r" / "generated-toy-maze-task1.png").read_bytes()
    with np.load(tmp_path / "r" / "generated-toy-maze-task1-points.npz") as f:
        points = f["xy1"]  # noise's seed-0 sample
    import pandas as pd

    from bench.augment import cache_path

    runs = pd.read_parquet(results / "repgen.parquet")
    noise = runs[runs["augmenter_label"] == "noise"].sort_values("seed")["augmentation.cache_key"]
    cache_path(str(noise.iloc[0])).unlink()  # seed 0's augmentation gone: drawn from seed 1's
    second = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(study), "--out", str(tmp_path / "s"),
                             "--no-show"], capture_output=True, text=True)
    assert second.returncode == 0 and "Not drawn" not in (tmp_path / "s" / "index.md").read_text()
    assert (tmp_path / "s" / "generated-toy-maze-task1.png").stat().st_size > 10_000
    keys = runs["augmentation.cache_key"].dropna()
    for key in keys:  # another machine: the committed report is rebuilt without the augmentation cache
        cache_path(str(key)).unlink(missing_ok=True)  # (`none` has a key and no file)
    again = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(study), "--out", str(tmp_path / "r"),
                            "--no-show"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    text = (tmp_path / "r" / "index.md").read_text()
    assert "![generated-toy-maze-task1](generated-toy-maze-task1.png)" in text and "Not drawn" not in text
    assert "Panels of noise drawn from the sample an earlier build stored" in text  # redrawn, the panel kept
    with np.load(tmp_path / "r" / "generated-toy-maze-task1-points.npz") as f:
        assert list(f["labels"]) == ["original data", "noise"] and np.array_equal(f["xy1"], points)
    # A picture from before points were stored is kept whole when a panel's augmentation is missing.
    (tmp_path / "r" / "generated-toy-maze-task1-points.npz").unlink()
    old = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(study), "--out", str(tmp_path / "r"),
                          "--no-show"], capture_output=True, text=True)
    assert old.returncode == 0 and "Kept from an earlier build" in (tmp_path / "r" / "index.md").read_text()
    assert (tmp_path / "r" / "generated-toy-maze-task1.png").read_bytes() == picture
    fresh = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(study), "--out", str(tmp_path / "f"),
                            "--no-show"], capture_output=True, text=True)
    assert fresh.returncode == 0 and "Not drawn: toy-maze / noise" in (tmp_path / "f" / "index.md").read_text()
    quiet = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(study), "--out", str(tmp_path / "q"),
                            "--no-show"], capture_output=True, text=True)
    assert quiet.returncode == 0 and "iql / none" not in quiet.stdout and "report:" in quiet.stdout


def test_paper_claims_verdicts_on_known_differences(tmp_path):
    """Known answers: DiffStitch +20 points over none for IQL over 6 seeds (supports), TATU -20 for TD3+BC
    (contradicts), SER synthetic-only equal to none up to noise of 0.5 (supports 'matches'), ASTRO at the same
    ceiling as DiffStitch (cannot tell), ASTRO's DVR lower than DiffStitch's (supports); a claim with no runs."""
    from bench.report import claims

    rng = np.random.default_rng(1)
    rows = []
    for seed in range(6):
        def add(aug, algo, score, mode="ratio", dvr=None):
            rows.append({"status": "done", "dataset": "d", "task": 1, "algo": algo, "augmenter": aug,
                         "augmenter_label": aug, "seed": seed, "score_last3_mean": score, "config.mix.mode": mode,
                         "augmentation.dvr.dvr": dvr, "augmentation.cache_key": f"{aug}{seed}"})
        add("none", "iql", 40 + rng.normal(0, 1))
        add("diffstitch", "iql", 60 + rng.normal(0, 1), "union", 0.4 + 0.01 * seed)
        add("none", "td3bc", 50 + rng.normal(0, 1))
        add("tatu", "td3bc", 30 + rng.normal(0, 1))
        add("ser", "iql", rows[-4]["score_last3_mean"] + rng.normal(0, 0.5), "synthetic")
        add("astro", "iql", 60.0, "union", 0.1 + 0.01 * seed)
        # an ablation of DiffStitch far below none: pooled into the claim, it would turn +20 into a loss
        rows.append({**rows[-5], "augmenter_label": "diffstitch-no-qualification", "score_last3_mean": 0.0,
                     "augmentation.cache_key": f"dnq{seed}"})
    frame = pd.DataFrame(rows)
    frame.loc[frame["augmenter_label"] == "diffstitch", "score_last3_mean"] = 60.0  # ASTRO vs DiffStitch: one ceiling
    table = claims.evaluate(frame, "score_last3_mean", "augmentation.dvr.dvr").set_index("claim")
    verdict = table["verdict"].to_dict()
    assert verdict["stitching improves IQL"] == "supports"
    assert table.loc["stitching improves IQL", "n"] == 6
    assert float(table.loc["stitching improves IQL", "difference"]) > 15  # the ablation is not pooled in
    assert verdict["truncated rollouts improve TD3+BC"] == "contradicts"
    assert verdict["stitching improves TD3+BC"] == "not measured in this study"
    assert verdict["training on synthetic data alone matches training on the real data"] == "supports"
    astro = next(k for k in verdict if k.startswith("ASTRO improves"))
    assert verdict[astro].startswith("cannot tell")
    dvr = next(k for k in verdict if k.startswith("ASTRO's data"))
    assert verdict[dvr] == "supports"
    index = build_report(frame.assign(metric="success rate (%)"), pd.DataFrame(), tmp_path / "rep", "k.yaml")
    assert "## What the papers claim, and what this study finds" in index.read_text()
