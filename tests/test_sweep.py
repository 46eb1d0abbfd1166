"""Studies: validation with file and line, expansion, resumable local runs, status and collect."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench import sweep
from bench.errors import BenchError

TINY = """\
name: tiny
datasets:
  - name: toy-maze
    tasks: [1]
augmenters:
  - name: none
  - name: noise
    label: noise-small
    config: {scale: 0.05, size: 0.2}
algos:
  - name: iql
    config: {batch_size: 16, hidden_units: [32, 32]}
seeds: [0, 1]
training: {steps: 10}
evaluation: {episodes: 1}
executor: {kind: debug}
"""


def write(tmp_path: Path, text: str, name="study.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("edit,match", [
    (("  - name: noise\n", "  - name: nosie\n"), r"study.yaml:7: unknown augmenter 'nosie' \(allowed: .*noise"),
    (("seeds: [0, 1]", "seeds: [0, one]"), r"study.yaml:13: seeds.1: Input should be a valid integer"),
    (("training: {steps: 10}", "training: {steps: 10, epochs: 3}"),
     r"study.yaml:14: training.epochs: Extra inputs are not permitted \(allowed: steps, eval_every\)"),
    (("batch_size: 16", "batch_sise: 16"), r"study.yaml:12: .*unknown key 'batch_sise'.*did you mean 'batch_size'"),
    (("  - name: iql\n", "  - name: iqll\n"), r"study.yaml:11: unknown algo 'iqll'"),
    (("name: toy-maze", "name: toy-mase"), r"study.yaml:3: unknown dataset 'toy-mase'.*did you mean toy-maze"),
    (("tasks: [1]", "tasks: [9]"), r"study.yaml:3: 'task' = 9.*no such task"),
    (("training: {steps: 10}", "training: {steps: -10}"), r"study.yaml:14: training.steps: Input should be greater"),
    (("training: {steps: 10}", "training: {steps: 10, eval_every: 3}"),
     r"study.yaml:14: 'eval_every' = 3 does not divide 'steps' = 10"),
    (("  - name: iql\n    config: {batch_size: 16, hidden_units: [32, 32]}\n", "  - name: dt\n"),
     r"not applicable.*skip_inapplicable: true"),
    (("name: tiny\n", "name: tiny\nfoo: 1\n"), r"study.yaml:2: foo: Extra inputs are not permitted \(allowed: name"),
])
def test_study_errors_name_file_line_and_allowed(tmp_path, toy_file, results, edit, match):
    p = write(tmp_path, TINY.replace(*edit))
    with pytest.raises(BenchError, match=match):
        sweep.expand(p)
    assert not results.exists()


def test_dry_run_submits_nothing(tmp_path, toy_file, results):
    p = write(tmp_path, TINY)
    res = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(p), "--dry-run"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    assert "4 runs" in res.stdout and "4 to run" in res.stdout and "2 augmentations" in res.stdout
    assert not results.exists()


def test_debug_sweep_runs_once_then_skips_then_collects(tmp_path, toy_file, results):
    p = write(tmp_path, TINY)
    study, runs = sweep.expand(p)
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4
    res = sweep.run_local(sweep.select(runs, sweep.run_states(), False, False, None), 1, False, in_process=True)
    assert res["done"] == 4 and res["failed"] == 0 and res["augmentations"] == 2  # one per augmentation seed
    states = sweep.run_states()
    assert sweep.describe(runs, states)["done"] == 4
    assert sweep.select(runs, states, False, False, None) == []
    assert len(sweep.select(runs, states, True, False, None)) == 4
    assert [r.label for r in sweep.select(runs, states, True, False, "*/noise-small/*/1")] == \
        ["toy-maze/1/noise-small/iql/1"]
    from bench.collect import collect

    runs_path, curves_path, n = collect(study.name, runs)
    frame = pd.read_parquet(runs_path)
    assert n == 4 and len(frame) == 4
    assert {"run_id", "score", "config.algo.config.expectile", "augmenter_label", "versions.d3rlpy"} <= set(frame)
    assert sorted(frame["augmenter_label"].unique()) == ["noise-small", "none"]
    curves = pd.read_parquet(curves_path)
    assert len(curves) == 4 and set(curves["run_id"]) == set(frame["run_id"])


def test_failed_run_is_reported_and_others_finish(tmp_path, toy_file, results):
    from methods import AUGMENTERS
    from methods.base import Augmenter, AugmenterConfig

    class Boom(Augmenter):
        name = "boom"
        config_class = AugmenterConfig
        output = "transitions"

        def fit(self, dataset):
            raise RuntimeError("the boom augmenter always fails")

        def generate(self):
            return None

    AUGMENTERS._items["boom"] = Boom
    try:
        p = write(tmp_path, TINY.replace("  - name: noise\n    label: noise-small\n    config: {scale: 0.05, size: 0.2}\n",
                                         "  - name: boom\n"))
        study, runs = sweep.expand(p)
        res = sweep.run_local(sweep.select(runs, {}, False, False, None), 1, False, in_process=True)
        assert res["done"] == 2 and res["failed"] == 2
        assert all("boom augmenter always fails" in msg for _, msg in res["failures"])
        states = sweep.run_states()
        failed = [r for r in runs if states.get(r.run_id) == "failed"]
        assert len(failed) == 2
        assert any("always fails" in line for line in sweep.error_lines(failed[0].run_id))
        assert sweep.select(runs, states, False, False, None) == []
        assert len(sweep.select(runs, states, False, True, None)) == 2
    finally:
        del AUGMENTERS._items["boom"]


def _consistent(results: Path) -> tuple[int, int]:
    """Every run that looks finished is finished: result.json implies a complete curve and a policy."""
    done = incomplete = 0
    for d in (results / "runs").iterdir() if (results / "runs").exists() else []:
        if (d / "result.json").exists():
            result = json.loads((d / "result.json").read_text())
            assert result["grad_steps"] == result["config"]["steps"]
            rows = (d / "curve.csv").read_text().strip().splitlines()
            assert len(rows) == 1 + result["config"]["steps"] // result["config"]["eval_every"]
            assert (d / "policy.d3").stat().st_size > 0
            done += 1
        else:
            incomplete += 1
    return done, incomplete


def test_random_kills_never_leave_a_fake_finished_run(tmp_path, toy_file, results):
    text = TINY.replace("seeds: [0, 1]", "seeds: [0, 1, 2]").replace("training: {steps: 10}",
                                                                     "training: {steps: 40, eval_every: 10}")
    p = write(tmp_path, text.replace("kind: debug", "kind: local, workers: 2"))
    cmd = [sys.executable, "-m", "bench.cli", "sweep", str(p)]
    rng = random.Random(0)
    for attempt in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(3.0, 12.0))
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers, at a random moment
        proc.wait()
        _consistent(results)
    before, _ = _consistent(results)
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    after, incomplete = _consistent(results)
    assert after == 6 and incomplete == 0
    assert f"{6 - before} runs done" in res.stdout  # exactly the missing work


def test_collect_records_inapplicable_pairs(tmp_path, toy_file, results):
    text = TINY.replace("seeds: [0, 1]", "seeds: [0]") + "skip_inapplicable: true\n"
    text = text.replace("algos:\n", "algos:\n  - name: dt\n    config: {preset: cpu-smoke}\n")
    p = write(tmp_path, text)
    study, runs = sweep.expand(p)
    sweep.run_local(sweep.select(runs, {}, False, False, None), 1, False, in_process=True)
    from bench.collect import collect

    runs_path, _, n = collect(study.name, runs)
    frame = pd.read_parquet(runs_path)
    assert n == 3 and len(frame) == 4
    na = frame[frame["status"] == "not applicable"]
    assert list(na["algo"]) == ["dt"] and list(na["augmenter"]) == ["noise"]


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_study_files_validate(path, results, toy_file):
    study, runs = sweep.expand(path, load_data=False)
    assert study.name == path.stem and runs
    assert all(r.applicable or r.request.algo == "dt" for r in runs)


SLOW_AUG = """
import os, time
import numpy as np
from methods.base import Augmenter, AugmenterConfig

class Slow(Augmenter):
    name = 'slow'
    config_class = AugmenterConfig
    output = 'transitions'

    def fit(self, dataset):
        with open(os.environ['SLOW_COUNT'], 'a') as f:
            f.write(f'{os.getpid()}\\n')
        time.sleep(float(os.environ.get('SLOW_SECONDS', '3')))
        self.data = dataset

    def generate(self):
        rows = np.arange(10)
        return self.transitions(self.data, rows, self.data.observations[rows], self.data.next_observations[rows])
"""

AUGMENT = ("from bench import data; from bench.augment import augment; from methods import AUGMENTERS; "
           "ds = data.load('toy-maze', 1); augment(ds, 'slow', AUGMENTERS.get('slow').config_class(), 0)")


def test_one_generation_per_augmentation_even_after_a_killed_holder(tmp_path, toy_file):
    site = tmp_path / "plugins"
    (site / "slow_aug-0.1.dist-info").mkdir(parents=True)
    (site / "slow_aug-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-aug\nVersion: 0.1\n")
    (site / "slow_aug-0.1.dist-info" / "entry_points.txt").write_text("[augbench.augmenters]\nslow = slow_aug:Slow\n")
    (site / "slow_aug.py").write_text(SLOW_AUG)
    count = tmp_path / "count"
    env = {**os.environ, "PYTHONPATH": str(site), "SLOW_COUNT": str(count), "SLOW_SECONDS": "4"}
    holder = subprocess.Popen([sys.executable, "-c", AUGMENT], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not (count.exists() and count.read_text().strip()):
        time.sleep(0.1)
    holder.kill()  # SIGKILL while it holds the lock and generates
    holder.wait()
    racers = [subprocess.Popen([sys.executable, "-c", AUGMENT], env={**env, "SLOW_SECONDS": "1"}) for _ in range(2)]
    assert [p.wait(timeout=120) for p in racers] == [0, 0]
    pids = count.read_text().split()
    assert len(pids) == 2 and pids[0] == str(holder.pid)  # the killed attempt, then exactly one generation
    from bench.augment import cache_key, cache_path
    from bench import data
    from bench.dataset import load

    generated = load(cache_path(cache_key(data.load("toy-maze", 1), "slow", {}, 0, sample_fields=())))
    assert len(generated) == 10


@pytest.mark.parametrize("study_file", sorted(p.name for p in (Path(__file__).parent.parent / "sweeps").glob("*.yaml")))
def test_every_shipped_study_dry_runs(study_file, toy_file, results):
    """Every study under sweeps/ expands and prints its plan, whatever its dataset names hold ('/' in Minari ids),
    with its datasets present or not."""
    path = Path(__file__).parent.parent / "sweeps" / study_file
    res = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(path), "--dry-run"], capture_output=True,
                         text=True, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    study, runs = sweep.expand(path, load_data=False)
    assert len(runs) > 0 and all(r.label.startswith(r.request.dataset + "/") for r in runs)
    assert f"{study.name}:" in res.stdout


def test_an_augmenter_variant_can_mix_its_own_way(tmp_path, toy_file, results):
    """SER synthetic-only beside SER 50/50 in one study: the variant's `mix` overrides the study's."""
    text = TINY.replace("    label: noise-small\n    config: {scale: 0.05, size: 0.2}\n",
                        "    label: noise-small\n    config: {scale: 0.05, size: 0.2}\n"
                        "  - name: noise\n    label: noise-only\n    config: {scale: 0.05, size: 0.2}\n"
                        "    mix: {mode: synthetic}\n")
    _, runs = sweep.expand(write(tmp_path, text))
    mixes = {r.augmenter_label: r.request.mix["mode"] for r in runs}
    assert mixes == {"none": "ratio", "noise-small": "ratio", "noise-only": "synthetic"}
    ids = {r.augmenter_label: r.run_id for r in runs if r.request.seed == 0}
    assert len(set(ids.values())) == 3 and all(ids.values())
    assert len(sweep.distinct_augmentations(runs)) == 2  # the two noise variants share each seed's augmentation


def test_archived_runs_count_as_done_on_a_fresh_machine_and_collect_from_the_archive(tmp_path, toy_file, results):
    """`archive:` keeps the finished runs' small files beside the study; a machine without the results (a fresh
    clone) trains none of them again, and collect / report read them from the archive."""
    import shutil

    (tmp_path / "sweeps").mkdir()
    p = write(tmp_path / "sweeps", TINY + "archive: ../reports/tiny/runs\n")
    cli = [sys.executable, "-m", "bench.cli", "sweep", str(p)]
    res = subprocess.run(cli + ["--only", "*/none/*"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    archive = tmp_path / "reports" / "tiny" / "runs"
    study, runs = sweep.expand(p)
    none_ids = {r.run_id for r in runs if r.request.augmenter == "none"}
    assert {d.name for d in archive.iterdir()} == none_ids
    for d in archive.iterdir():
        assert sorted(f.name for f in d.iterdir()) == ["config.json", "curve.csv", "result.json"]  # no policy
    shutil.rmtree(results)  # a fresh machine: nothing but the archive
    dry = subprocess.run(cli + ["--dry-run"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert dry.returncode == 0 and "2 to run" in dry.stdout, dry.stdout
    res = subprocess.run(cli, capture_output=True, text=True)
    assert res.returncode == 0 and "2 runs done" in res.stdout and "archive: 2 runs added" in res.stdout, res.stdout
    assert len(list(archive.iterdir())) == 4
    assert {d.name for d in (results / "runs").iterdir()} == {r.run_id for r in runs} - none_ids  # none not rerun
    from bench.collect import collect

    runs_path, _, n = collect(study.name, runs, sweep.archive_of(study))
    assert n == 4 and set(pd.read_parquet(runs_path)["status"]) == {"done"}
    assert n == 4 and collect(study.name, runs)[2] == 2  # without the archive only this machine's two


def test_a_run_archived_on_another_machine_matches_by_the_data_recipe(tmp_path, toy_file, results):
    """Generated data differs bitwise across CPUs (MuJoCo's floating point), and with it the content hash and the
    run id.  An archived run whose data came from the same generator config and seed is still the same run: the
    sweep counts it as done, collect reads it, and the report says the runs trained on two generations.  A run
    without a data recipe (data read as it is) matches by run id only."""
    import shutil

    from bench.io import write_json
    from bench.run import run_id

    (tmp_path / "sweeps").mkdir()
    p = write(tmp_path / "sweeps", TINY + "archive: ../reports/tiny/runs\n")
    cli = [sys.executable, "-m", "bench.cli", "sweep", str(p)]
    assert subprocess.run(cli + ["--only", "*/none/*"], capture_output=True, text=True).returncode == 0
    archive = tmp_path / "reports" / "tiny" / "runs"
    fresh = {**os.environ, "COLUMNS": "200", "AUGBENCH_CACHE": str(tmp_path / "fresh-cache")}  # data not made yet
    dry = subprocess.run(cli + ["--dry-run"], capture_output=True, text=True, env=fresh)
    assert dry.returncode == 0 and "done: 0" in dry.stdout, dry.stdout
    assert "toy-maze is not on this machine" in dry.stdout and "none of the 2 runs archived" in dry.stdout, dry.stdout
    assert not (tmp_path / "fresh-cache" / "datasets").exists()  # a dry run makes no data
    for d in list(archive.iterdir()):  # as another machine would have filed them: another content hash
        result = json.loads((d / "result.json").read_text())
        assert result["data_recipe"]["config"]["seed"] == 0
        cfg = {k: v for k, v in result["config"].items() if k != "run_id"}
        cfg["dataset"] = {**cfg["dataset"], "content_hash": "f" * 32}
        rid = run_id(cfg)
        result.update(run_id=rid, config={**cfg, "run_id": rid})
        write_json(d / "result.json", result)
        write_json(d / "config.json", {**cfg, "run_id": rid})
        d.rename(archive / rid)
    shutil.rmtree(results)
    env = {**os.environ, "COLUMNS": "200"}
    dry = subprocess.run(cli + ["--dry-run"], capture_output=True, text=True, env=env)
    assert dry.returncode == 0 and "2 to run" in dry.stdout and "done: 2" in dry.stdout, dry.stdout
    res = subprocess.run(cli, capture_output=True, text=True)
    assert res.returncode == 0 and "2 runs done" in res.stdout and "archive: 2 runs added" in res.stdout, res.stdout
    study, runs = sweep.expand(p)
    from bench.collect import collect

    runs_path, curves_path, n = collect(study.name, runs, sweep.archive_of(study))
    frame = pd.read_parquet(runs_path)
    assert n == 4 and set(frame["status"]) == {"done"}
    assert set(frame["run_id"]) == {r.run_id for r in runs}  # the planned ids, curves joined to them
    assert set(pd.read_parquet(curves_path)["run_id"]) == set(frame["run_id"])
    assert frame["archived_run_id"].notna().sum() == 2
    rep = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(p), "--out", str(tmp_path / "rep"),
                          "--no-show"], capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "rep" / "index.md").read_text()
    assert "2 bitwise-different generations" in text and "ffffffff (2 runs)" in text, text[:3000]
    for d in archive.iterdir():  # without a recipe (data read as it is): the other machine's runs do not match
        if (d / "result.json").read_text().count("f" * 32):
            result = json.loads((d / "result.json").read_text())
            result["data_recipe"] = None
            write_json(d / "result.json", result)
    dry = subprocess.run(cli + ["--dry-run"], capture_output=True, text=True, env=env)
    assert dry.returncode == 0 and "2 to run" in dry.stdout, dry.stdout


SPY = """\
import os, sys
import bench.sweep.local as local
from bench.cli import main
archive, calls, real = sys.argv[2], [], local._train_job
def spy(req, force, root):  # what the archive holds as each run starts
    calls.append(sorted(os.listdir(archive)) if os.path.isdir(archive) else [])
    print("ARCHIVE-AT-START", len(calls), len(calls[-1]), flush=True)
    return real(req, force, root)
local._train_job = spy
sys.argv = ["bench", "sweep", sys.argv[1], "--only", "*/none/*"]
main()
"""


def test_each_finished_run_is_archived_before_the_next_one_starts(tmp_path, toy_file, results):
    """A launcher killed outright (kill -9, a session that ends) keeps every run it finished: each is archived as
    it finishes, not only when the sweep ends."""
    (tmp_path / "sweeps").mkdir()
    p = write(tmp_path / "sweeps", TINY + "archive: ../reports/tiny/runs\n")
    archive = tmp_path / "reports" / "tiny" / "runs"
    res = subprocess.run([sys.executable, "-c", SPY, str(p), str(archive)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "ARCHIVE-AT-START 1 0" in res.stdout and "ARCHIVE-AT-START 2 1" in res.stdout, res.stdout
    assert "archive: 2 runs added" in res.stdout, res.stdout  # counted once, during the sweep or at its end
    assert len(list(archive.iterdir())) == 2


ARCHIVED = sorted((Path(__file__).resolve().parent.parent / "reports").glob("*/runs/*/config.json"))


@pytest.mark.skipif(not ARCHIVED, reason="no archived runs committed under reports/*/runs")
def test_committed_archives_keep_their_run_ids():
    """A committed run is found again only while its id is the same: re-resolving each archived run's configs with
    today's code (new fields take their defaults) must give the id it is filed under.  A failure means a config
    change (a new field, a renamed one, a new default) renumbers every archived run: keep the old behaviour's
    id, or bump CONFIG_SCHEMA and re-run the studies."""
    from algos import TRAINERS
    from algos.base import resolve
    from bench.mixing import MixConfig
    from bench.run import run_id
    from methods import AUGMENTERS

    for path in ARCHIVED:
        cfg = json.loads(path.read_text())
        aug, algo = cfg["augmenter"], cfg["algo"]
        trainer = TRAINERS.get(algo["name"])
        again = {k: v for k, v in cfg.items() if k != "run_id"}
        again["augmenter"] = {**aug, "config": AUGMENTERS.get(aug["name"]).resolve_config(aug["config"]).to_dict()}
        again["algo"] = {**algo, "config": resolve(trainer.config_class, trainer.presets, algo["config"],
                                                          where="archived").to_dict()}
        again["mix"] = MixConfig.from_dict(cfg["mix"]).to_dict()
        assert run_id(again) == path.parent.name, f"{path}: today's code files this run under {run_id(again)}"


def test_an_option_added_later_keeps_old_ids_at_its_old_value_and_makes_new_ones_otherwise(toy_file):
    """`noise`'s `labels` came after runs were archived without it (the archived noise runs above keep their
    ids only through `Config.identity`).  At its old value ("copy") run id and cache keys are those of the
    config without the key; at "task" they are new; the stored config names it either way."""
    from bench import data
    from bench.augment import cache_key, fit_key
    from bench.run import RunRequest, canonical_config, run_id

    ds = data.load("toy-maze", 1)
    base = dict(dataset="toy-maze", task=1, augmenter="noise", algo="iql", seed=0, steps=10, eval_every=10,
                eval_episodes=1)
    old, new = (canonical_config(RunRequest(**base, augmenter_config={"labels": v}), ds, "cpu")
                for v in ("copy", "task"))
    assert old["augmenter"]["config"]["labels"] == "copy"  # stored in full
    without = {**old, "augmenter": {**old["augmenter"], "config": {
        k: v for k, v in old["augmenter"]["config"].items() if k != "labels"}}}
    assert run_id(old) == run_id(without) != run_id(new)
    c_old, c_new, c_without = (c["augmenter"]["config"] for c in (old, new, without))
    before = cache_key(ds, "noise", c_without, 0, sample_fields=("scale", "size"))  # as the code before the option
    assert cache_key(ds, "noise", c_old, 0) == before != cache_key(ds, "noise", c_new, 0)
    assert fit_key(ds, "noise", c_old, 0, ("scale", "size", "labels")) == fit_key(ds, "noise", c_new, 0,
                                                                                  ("scale", "size", "labels"))


def test_a_damaged_archived_result_is_one_line_naming_it(tmp_path, toy_file, results):
    (tmp_path / "sweeps").mkdir()
    p = write(tmp_path / "sweeps", TINY.replace("seeds: [0, 1]", "seeds: [0]") + "archive: ../archive\n")
    assert subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(p), "--only", "*/none/*"],
                          capture_output=True, text=True).returncode == 0
    damaged = next((tmp_path / "archive").glob("*/result.json"))
    damaged.write_text('{"run_id": ')
    import shutil

    shutil.rmtree(results)
    res = subprocess.run([sys.executable, "-m", "bench.cli", "collect", str(p)], capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" not in res.stderr and str(damaged) in res.stderr.replace("\n", "")


def test_workers_take_their_thread_count_from_omp_num_threads_when_it_is_set(monkeypatch):
    """A shared machine: OMP_NUM_THREADS caps each worker's torch threads; unset, the cores are shared out."""
    from bench.sweep.local import worker_threads

    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert worker_threads(2) == 4 and worker_threads(16) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert worker_threads(2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert worker_threads(2) == 4


def test_augment_only_makes_the_augmentations_and_trains_nothing(tmp_path, toy_file, results):
    """`bench sweep FILE --augment-only`: the distinct augmentations of the selected runs are in the cache
    afterwards (the runs then read them from it), and no run was trained."""
    from bench.augment import cache_key, cache_path
    from bench import data
    from methods import AUGMENTERS

    p = write(tmp_path, TINY.replace("executor: {kind: debug}", "executor: {kind: local, workers: 2}"))
    res = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(p), "--augment-only", "--only",
                          "*/noise-small/*"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2 of 2 augmentations made" in res.stdout and "no run trained" in res.stdout
    assert not (results / "runs").exists() or not any((results / "runs").glob("*/result.json"))
    ds = data.load("toy-maze", 1)
    cfg = AUGMENTERS.get("noise").resolve_config({"scale": 0.05, "size": 0.2}).to_dict()
    for seed in (0, 1):
        assert cache_path(cache_key(ds, "noise", cfg, seed, AUGMENTERS.get("noise").sample_fields)).exists()
    bad = write(tmp_path, TINY.replace("executor: {kind: debug}", "executor: {kind: slurm}"), "slurm.yaml")
    res = subprocess.run([sys.executable, "-m", "bench.cli", "sweep", str(bad), "--augment-only"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "--augment-only runs on this machine" in res.stdout + res.stderr
    assert "Traceback" not in res.stderr
