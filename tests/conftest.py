"""Shared fixtures: every test writes only under pytest's temporary folders."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import gymnasium

from bench.data import pointmaze


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("AUGBENCH_CACHE", str(root / "cache"))
    monkeypatch.setenv("AUGBENCH_OGBENCH_DIR", str(root / "ogbench"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
    monkeypatch.setenv("MUJOCO_GL", "egl")


SMALL_STITCH = pointmaze.MazeGenConfig(maze="medium", kind="stitch", episodes=20, episode_steps=51, seed=3)
SMALL_NAVIGATE = pointmaze.MazeGenConfig(maze="medium", kind="navigate", episodes=10, episode_steps=1001, seed=5)


def make_files(cfg: pointmaze.MazeGenConfig, folder: Path, name: str | None = None) -> Path:
    """Generate `cfg` and write it as OGBench files under `folder` (OGBench's own file name by default)."""
    path = folder / f"{name or cfg.ogbench_name}.npz"
    if not path.exists():
        train, val, sec = pointmaze.generate(cfg, workers=1)
        pointmaze.write(train, val, path, cfg, sec)
    return path


@pytest.fixture(scope="session")
def stitch_file(tmp_path_factory) -> Path:
    """A small medium-stitch dataset in a session-wide OGBench folder of its own."""
    return make_files(SMALL_STITCH, tmp_path_factory.mktemp("ogb_stitch"))


@pytest.fixture(scope="session")
def navigate_file(tmp_path_factory) -> Path:
    return make_files(SMALL_NAVIGATE, tmp_path_factory.mktemp("ogb_nav"))


@pytest.fixture
def ogbench_home(monkeypatch, stitch_file, navigate_file, tmp_path) -> Path:
    """An OGBench directory holding the small stitch and navigate files under OGBench's names."""
    d = tmp_path / "ogbench_home"
    d.mkdir()
    for f in (stitch_file, navigate_file):
        for p in (f, pointmaze.val_path(f), pointmaze.sidecar_path(f)):
            (d / p.name).symlink_to(p)
    monkeypatch.setenv("AUGBENCH_OGBENCH_DIR", str(d))
    return d


def replace_cfg(cfg, **kw):
    return replace(cfg, **kw)


def raw_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


TOY = pointmaze.MazeGenConfig(maze="medium", kind="stitch", episodes=30, episode_steps=201, seed=0)


@pytest.fixture(scope="session")
def toy_file(tmp_path_factory) -> Path:
    """`toy-maze` (30 episodes) in the session cache every test points AUGBENCH_CACHE at."""
    return make_files(TOY, tmp_path_factory.getbasetemp() / "cache" / "datasets", name="toy-maze")


@pytest.fixture(scope="module")
def toy_task1(toy_file):
    """The test toy maze's task-1 dataset, loaded once per module (AUGBENCH_CACHE points at the session cache
    for the module's tests)."""
    from bench import data

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUGBENCH_CACHE", str(toy_file.parent.parent))
        yield data.load("toy-maze", 1)


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "results"
    monkeypatch.setenv("AUGBENCH_RESULTS", str(root))
    return root


MINARI_ID = "augbench/hopper-random-v0"


@pytest.fixture
def minari_dataset(tmp_path, monkeypatch):
    """Five short random Hopper episodes: random Hopper falls (termination) unless the 25-step limit
    truncates it first, so both endings occur."""
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gymnasium.make("Hopper-v5", max_episode_steps=25), record_infos=False)
    env.action_space.seed(0)
    for k in range(8):
        env.reset(seed=k)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample() * (0.2 if k % 2 else 1.0))
            done = terminated or truncated
    env.create_dataset(dataset_id=MINARI_ID, algorithm_name="random", author="augbench",
                            author_email="tests@augbench.invalid", code_permalink="https://example.invalid",
                            description="test data", ref_min_score=-20.0, ref_max_score=3000.0)
    env.close()
    return minari.load_dataset(MINARI_ID)


from bench.sweep import slurm_available  # noqa: E402


@pytest.fixture
def slurm_cluster():
    reason = slurm_available()
    if reason:
        if os.environ.get("AUGBENCH_REQUIRE_SLURM"):
            pytest.fail(f"real SLURM required here (AUGBENCH_REQUIRE_SLURM is set) but {reason}")
        print(f"skipping: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matmuls: one intra-op thread is as fast and does not spin against other work on the machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
