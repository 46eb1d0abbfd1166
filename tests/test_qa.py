"""Defects from the hostile QA pass (issue 12), each reproduced by a test first: runs claimed while they train,
stale temporaries, and bad input refused with one line before anything is written."""

from __future__ import annotations

import fcntl
import os

import pytest

from bench.errors import BenchError, RunningElsewhere
from bench.run import RunRequest, execute, plan
from tests.test_sweep import TINY, write


def req(**kw) -> RunRequest:
    base = dict(dataset="toy-maze", task=1, algo="iql", steps=20, eval_every=10, eval_episodes=1, device="cpu:0",
                algo_config={"batch_size": 16, "hidden_units": [32, 32]})
    return RunRequest(**{**base, **kw})


def test_a_run_being_trained_elsewhere_is_not_trained_twice(toy_file, results):
    from bench.sweep.local import _train_job

    r = req()
    run_dir = results / "runs" / plan(r).run_id
    run_dir.mkdir(parents=True)
    with open(run_dir / ".claim", "w") as holder:  # another process trains it now
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(RunningElsewhere, match="running elsewhere"):
            execute(r)
        with pytest.raises(RunningElsewhere):
            execute(r, force=True)  # --force while it runs: refused too
        status, _, msg = _train_job(r, False, str(results))
        assert status == "elsewhere" and "running elsewhere" in msg
        assert sorted(p.name for p in run_dir.iterdir()) == [".claim"]  # nothing written, no error.json
    _, result = execute(r)  # the claim went with its holder
    assert result["grad_steps"] == 20


def test_temporaries_of_killed_writers_are_removed_by_the_next_writer(tmp_path):
    from bench.io import write_json

    target = tmp_path / "curve.csv"
    dead = tmp_path / ".curve.csv.p999999999.abcd.tmp"  # no such process
    alive = tmp_path / f".curve.csv.p{os.getpid()}.efgh.tmp"  # a writer still at work
    other = tmp_path / ".other.csv.p999999999.abcd.tmp"  # another file's
    for p in (dead, alive, other):
        p.write_text("partial")
    write_json(target, {"a": 1})
    assert not dead.exists() and alive.exists() and other.exists() and target.exists()


@pytest.mark.parametrize("kw,match", [
    (dict(seed=5_000_000_000), r"'seed' must be in \[0, 2\^32\)"),
    (dict(seed=-1), r"'seed' must be in \[0, 2\^32\)"),
    (dict(eval_every=0), "'eval_every' must be at least 1, got 0"),
    (dict(device="banana"), "'device' = 'banana' is not a device"),
])
def test_bad_run_numbers_are_refused_before_anything_is_written(kw, match, toy_file, results):
    with pytest.raises(BenchError, match=match):
        execute(req(**kw))
    assert not results.exists()


@pytest.mark.parametrize("edit,match", [
    (("seeds: [0, 1]", "seeds: [0, 0]"), r"study.yaml:13: seeds: .*seed\(s\) 0 listed twice"),
    (("seeds: [0, 1]", "seeds: [0, 5000000000]"), r"study.yaml:13: seeds.1: Input should be less than 4294967296"),
    (("seeds: [0, 1]", "seeds: [-1]"), r"study.yaml:13: seeds.0: Input should be greater than or equal to 0"),
    (("name: tiny", "name: ../../x"), r"study.yaml:1: name: String should match pattern"),
    (("name: tiny", "name: " + "x" * 300), r"study.yaml:1: name: String should match pattern"),
    (("executor: {kind: debug}", "executor: {kind: debug}\ndevice: banana"), r"study.yaml:17: 'device' = 'banana' is not a device"),
])
def test_bad_studies_are_refused_whole(edit, match, tmp_path, toy_file, results):
    from bench import sweep

    with pytest.raises(BenchError, match=match):
        sweep.expand(write(tmp_path, TINY.replace(*edit)))


def test_an_empty_only_pattern_is_refused(tmp_path, toy_file, results):
    from bench import sweep

    _, runs = sweep.expand(write(tmp_path, TINY))
    with pytest.raises(BenchError, match="--only: an empty pattern"):
        sweep.select(runs, {}, False, False, "")
    assert len(sweep.select(runs, {}, False, False, None)) == len(runs)
