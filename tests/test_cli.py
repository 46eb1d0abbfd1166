"""The command line: the main job's commands, and every bad input as one line, a non-zero exit, nothing written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.data import pointmaze
from tests.conftest import raw_arrays


def bench(*args, env=None, timeout=300):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def snapshot(*dirs: Path) -> set[str]:
    out = set()
    for d in dirs:
        if d.exists():
            out |= {str(p) for p in d.rglob("*")}
    return out


def assert_one_line_error(res, *needles):
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_help_lists_every_command():
    res = bench("--help")
    assert res.returncode == 0
    assert "data" in res.stdout
    res = bench("data", "--help")
    for cmd in ("make", "show", "list"):
        assert cmd in res.stdout


def test_make_show_list_toy_maze(tmp_path):
    env = {"AUGBENCH_CACHE": str(tmp_path / "cache")}
    res = bench("data", "make", "toy-maze", "--episodes", "30", env=env)
    assert res.returncode == 0, res.stderr
    f = tmp_path / "cache" / "datasets" / "toy-maze.npz"
    assert f.exists() and pointmaze.val_path(f).exists()
    assert "steps/s" in res.stdout
    again = bench("data", "make", "toy-maze", "--episodes", "30", env=env)
    assert "up to date" in again.stdout
    res = bench("data", "show", "toy-maze", "--task", "1", env=env)
    assert res.returncode == 0, res.stderr
    png = tmp_path / "cache" / "figures" / "toy-maze-task1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "transitions" in res.stdout and "6000" in res.stdout
    res = bench("data", "list", env=env)
    assert "toy-maze" in res.stdout and "pointmaze-medium-navigate-v0" in res.stdout


def test_cache_dir_option_overrides_environment(tmp_path):
    res = bench("--cache-dir", str(tmp_path / "c2"), "data", "make", "toy-maze", "--episodes", "10",
                env={"AUGBENCH_CACHE": str(tmp_path / "c1")})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c2" / "datasets" / "toy-maze.npz").exists()
    assert not (tmp_path / "c1").exists()


@pytest.fixture
def bad_home(tmp_path, stitch_file):
    """An OGBench folder and a cache; each test puts one broken file in as pointmaze-medium-stitch-v0."""
    home = tmp_path / "ogb"
    home.mkdir()
    good = raw_arrays(stitch_file)
    np.savez(home / "pointmaze-medium-stitch-v0-val.npz", **raw_arrays(pointmaze.val_path(stitch_file)))
    return home, good, {"AUGBENCH_OGBENCH_DIR": str(home), "AUGBENCH_CACHE": str(tmp_path / "cache")}


def _broken(good, what):
    a = {k: v.copy() for k, v in good.items()}
    if what == "missing key":
        del a["actions"]
    elif what == "lengths":
        a["actions"] = a["actions"][:-3]
    elif what == "nan":
        a["observations"][7, 1] = np.nan
    elif what == "inf actions":
        a["actions"][9, 0] = np.inf
    elif what == "outside":
        a["actions"][11, 0] = 1.7
    elif what == "dtype":
        a["actions"] = a["actions"].astype(np.float64)
    elif what == "empty":
        a = {k: v[:0] for k, v in a.items()}
    return a


@pytest.mark.parametrize("what,needles", [
    ("missing key", ["missing key(s) actions"]),
    ("lengths", ["'actions' has"]),
    ("nan", ["'observations' holds NaN or inf", "row 7"]),
    ("inf actions", ["'actions' holds NaN or inf", "row 9"]),
    ("outside", ["row 11", "outside the action space"]),
    ("dtype", ["'actions' has dtype float64"]),
    ("empty", ["empty"]),
])
def test_bad_ogbench_files(bad_home, what, needles):
    home, good, env = bad_home
    np.savez(home / "pointmaze-medium-stitch-v0.npz", **_broken(good, what))
    before = snapshot(home, Path(env["AUGBENCH_CACHE"]))
    res = bench("data", "show", "pointmaze-medium-stitch-v0", "--task", "1", env=env)
    assert_one_line_error(res, "pointmaze-medium-stitch-v0.npz", *needles)
    assert snapshot(home, Path(env["AUGBENCH_CACHE"])) == before


def test_truncated_npz(bad_home, stitch_file):
    home, _, env = bad_home
    raw = stitch_file.read_bytes()
    (home / "pointmaze-medium-stitch-v0.npz").write_bytes(raw[: len(raw) // 3])
    res = bench("data", "show", "pointmaze-medium-stitch-v0", env=env)
    assert_one_line_error(res, "pointmaze-medium-stitch-v0.npz", "truncated or corrupt")


def test_unknown_names_and_missing_files(bad_home):
    _, _, env = bad_home
    res = bench("data", "show", "pointmaze-medum-stitch-v0", env=env)
    assert_one_line_error(res, "unknown dataset 'pointmaze-medum-stitch-v0'", "did you mean pointmaze-medium-stitch-v0")
    res = bench("data", "show", "pointmaze-large-navigate-v0", env=env)
    assert_one_line_error(res, "pointmaze-large-navigate-v0.npz", "not found", "bench data make")
    res = bench("data", "make", "pointmaze-medum-stitch-v0", env=env)
    assert_one_line_error(res, "cannot generate", "did you mean pointmaze-medium-stitch-v0")
    res = bench("data", "show", "toy-maze", env=env)
    assert_one_line_error(res, "bench data make toy-maze")


def test_bad_canonical_files(tmp_path, bad_home):
    from bench.dataset import Dataset
    from tests.test_dataset import tiny

    _, _, env = bad_home
    ds = tiny()
    old = Dataset(meta=ds.meta.model_copy(update={"schema_version": 0}), **ds.arrays())
    p = old.save(tmp_path / "old.npz")
    assert_one_line_error(bench("data", "show", str(p), env=env), "old.npz", "schema version 0")
    assert_one_line_error(bench("data", "show", str(tmp_path / "nope.npz"), env=env), "nope.npz", "no such file")


@pytest.mark.parametrize("args,needles", [
    (["--episodes", "-3"], ["--episodes", "at least 1"]),
    (["--kind", "explore"], ["--kind", "navigate, stitch"]),
    (["--maze", "tiny"], ["--maze"]),
    (["--noise", "nan"], ["--noise"]),
    (["--workers", "0"], ["--workers"]),
    (["--episodes", "many"], ["'--episodes'", "valid integer"]),
    (["--bogus"], ["--bogus"]),
])
def test_bad_make_options(tmp_path, args, needles):
    env = {"AUGBENCH_CACHE": str(tmp_path / "cache")}
    res = bench("data", "make", "toy-maze", *args, env=env)
    assert_one_line_error(res, *needles)
    assert not (tmp_path / "cache").exists()


def test_bad_task(bad_home, stitch_file):
    home, good, env = bad_home
    np.savez(home / "pointmaze-medium-stitch-v0.npz", **good)
    assert_one_line_error(bench("data", "show", "pointmaze-medium-stitch-v0", "--task", "7", env=env),
                          "--task: 'task' = 7", "tasks: 1, 2, 3, 4, 5")


def test_unwritable_cache_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = bench("--cache-dir", str(blocker / "cache"), "data", "make", "toy-maze", "--episodes", "2")
    assert_one_line_error(res, str(blocker / "cache"), "cannot")
    assert blocker.read_text() == "not a folder"


def test_interrupted_make_leaves_no_complete_file_and_rerun_completes(tmp_path):
    env = {**os.environ, "AUGBENCH_CACHE": str(tmp_path / "cache")}
    target = tmp_path / "cache" / "datasets" / "toy-maze.npz"
    for delay in (1.0, 3.0):
        # 3000 episodes take far longer than the kill delay on any machine: always killed mid-generation
        proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "data", "make", "toy-maze", "--force",
                                 "--episodes", "3000"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not target.exists()
        leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and not p.name.endswith(".tmp")]
        assert leftovers == [] or all(".tmp" in p.name for p in leftovers)
    res = bench("data", "make", "toy-maze", "--episodes", "20", env={"AUGBENCH_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr
    from bench import data

    os.environ["AUGBENCH_CACHE"] = str(tmp_path / "cache")
    assert data.load("toy-maze").n_episodes == 20


def test_atomic_write_failure_leaves_nothing(tmp_path):
    from bench.io import save_npz

    class Boom(np.ndarray):
        pass

    bad = np.array([object()], dtype=object)  # pickling refused mid-write
    with pytest.raises(ValueError):
        save_npz(tmp_path / "x.npz", {"a": np.zeros(1000), "b": bad})
    assert list(tmp_path.iterdir()) == []


def test_run_generates_a_missing_named_dataset_on_first_use(tmp_path, results):
    fresh = tmp_path / "fresh-cache"
    res = bench("run", "--dataset", "toy-maze", "--task", "1", "--algo", "iql", "--steps", "4", "--eval-episodes",
                "1", "--device", "cpu:0", "--algo-config", '{"batch_size": 8}', env={"AUGBENCH_CACHE": str(fresh)})
    assert res.returncode == 0, res.stderr
    assert "toy-maze: not generated yet; generating toy-maze now" in res.stderr
    assert (fresh / "datasets" / "toy-maze.npz").exists() and (fresh / "datasets" / "toy-maze-val.npz").exists()
    again = bench("run", "--dataset", "toy-maze", "--task", "1", "--algo", "iql", "--steps", "4", "--eval-episodes",
                  "1", "--device", "cpu:0", "--algo-config", '{"batch_size": 8}', env={"AUGBENCH_CACHE": str(fresh)})
    assert again.returncode == 0 and "generating" not in again.stderr
