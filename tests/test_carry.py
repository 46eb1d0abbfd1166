"""`bench carry`: a study's interrupted runs, cached augmentations and generated data moved to a fresh machine,
where the sweep resumes the runs from their checkpoints with the same data."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bench import sweep
from bench.errors import BenchError
from bench.run import execute
from bench.sweep import carry
from tests.test_run import interrupt_at

STUDY = """\
name: carried
datasets:
  - name: toy-maze
    tasks: [1]
augmenters:
  - name: noise
    config: {scale: 0.05, size: 0.2}
algos:
  - name: iql
    config: {batch_size: 16, hidden_units: [32, 32]}
seeds: [0]
training: {steps: 30, eval_every: 10}
evaluation: {episodes: 1}
executor: {kind: debug}
"""


def _curve(run_dir: Path) -> list[list[str]]:
    return [row.split(",")[:4] for row in (run_dir / "curve.csv").read_text().splitlines()]


def _fresh_machine(monkeypatch, tmp_path: Path, name: str, toy_file: Path | None = None) -> dict[str, Path]:
    """Empty cache, OGBench and results folders of a machine of its own (holding the toy maze when given)."""
    import shutil

    dirs = {k: tmp_path / name / k for k in ("cache", "ogbench", "results")}
    monkeypatch.setenv("AUGBENCH_CACHE", str(dirs["cache"]))
    monkeypatch.setenv("AUGBENCH_OGBENCH_DIR", str(dirs["ogbench"]))
    monkeypatch.setenv("AUGBENCH_RESULTS", str(dirs["results"]))
    if toy_file is not None:
        (dirs["cache"] / "datasets").mkdir(parents=True)
        for f in toy_file.parent.glob("toy-maze*"):
            shutil.copy2(f, dirs["cache"] / "datasets" / f.name)
    return dirs


def test_an_interrupted_run_resumes_on_a_fresh_machine_with_the_carried_data(tmp_path, toy_file, monkeypatch):
    study_file = tmp_path / "study.yaml"
    study_file.write_text(STUDY)
    # the reference: the run uninterrupted, on its own machine
    _fresh_machine(monkeypatch, tmp_path, "reference", toy_file)
    [r] = sweep.expand(study_file)[1]
    _, full = execute(r.request)
    reference = _curve(tmp_path / "reference" / "results" / "runs" / r.run_id)

    # machine A: the same run, stopped after its evaluation at step 20, then packed
    a = _fresh_machine(monkeypatch, tmp_path, "a", toy_file)
    interrupt_at(r.request, 20)
    assert (a["results"] / "runs" / r.run_id / "checkpoint.pt").exists()
    (a["results"] / "runs" / r.run_id / ".claim").touch()  # a claim nobody holds is not carried
    out = tmp_path / "carry.tar.gz"
    res = subprocess.run([sys.executable, "-m", "bench.cli", "carry", "pack", str(study_file), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"({r.run_id}) at step 20" in res.stdout
    manifest = json.loads(tarfile.open(out).extractfile("carry.json").read())
    names = {f"{e['root']}/{e['path']}" for e in manifest["files"]}
    assert f"runs/{r.run_id}/checkpoint.pt" in names and f"runs/{r.run_id}/.claim" not in names
    assert f"cache/augmented/{r.aug_key}.npz" in names
    assert {"cache/datasets/toy-maze.npz", "cache/datasets/toy-maze-val.npz",
            "cache/datasets/toy-maze.augbench.json"} <= names
    assert manifest["runs"] == [{"run_id": r.run_id, "label": r.label, "step": 20}]

    # machine B: nothing but the archive; unpack, then the sweep resumes at step 20 and ends on the same curve
    b = _fresh_machine(monkeypatch, tmp_path, "b")
    got = carry.unpack(out)
    assert got["written"] == len(manifest["files"]) and got["same"] == 0
    for e in manifest["files"]:
        base = {"runs": b["results"] / "runs", "cache": b["cache"], "ogbench": b["ogbench"]}[e["root"]]
        assert (base / e["path"]).read_bytes() == (
            {"runs": a["results"] / "runs", "cache": a["cache"], "ogbench": a["ogbench"]}[e["root"]] / e["path"]
        ).read_bytes()
    assert carry.unpack(out)["same"] == len(manifest["files"])  # twice: nothing rewritten
    [rb] = sweep.expand(study_file)[1]
    assert rb.run_id == r.run_id  # the carried data is the same content, so the same run
    _, resumed = execute(rb.request)
    assert resumed["resumed_from_step"] == 20 and resumed["grad_steps"] == 30
    assert resumed["augmentation"]["from_cache"] is True
    assert _curve(b["results"] / "runs" / r.run_id) == reference


def test_unpack_checks_everything_first_and_overwrites_nothing(tmp_path, toy_file, monkeypatch):
    study_file = tmp_path / "study.yaml"
    study_file.write_text(STUDY)
    a = _fresh_machine(monkeypatch, tmp_path, "a", toy_file)
    with pytest.raises(BenchError, match="nothing to carry"):
        carry.pack(tmp_path / "study.yaml", tmp_path / "x.tar", only="no-such/*")
    [r] = sweep.expand(study_file)[1]
    interrupt_at(r.request, 10)
    out = tmp_path / "carry.tar"
    manifest = carry.pack(study_file, out)

    # another generation of the data already on the destination: refused, nothing written
    b = _fresh_machine(monkeypatch, tmp_path, "b")
    (b["cache"] / "datasets").mkdir(parents=True)
    (b["cache"] / "datasets" / "toy-maze.npz").write_bytes(b"another generation")
    with pytest.raises(BenchError, match="toy-maze.npz: already exists with other content.*nothing was written"):
        carry.unpack(out)
    assert sorted(p.name for p in b["cache"].rglob("*") if p.is_file()) == ["toy-maze.npz"]
    assert not (b["results"]).exists()

    # a damaged member, a missing one, a path outside the roots: refused before anything is written
    def rewrite(edit) -> Path:
        bad = tmp_path / "bad.tar"
        with tarfile.open(out) as src, tarfile.open(bad, "w") as dst:
            m = json.loads(src.extractfile("carry.json").read())
            members = {i.name: src.extractfile(i).read() for i in src.getmembers() if i.name != "carry.json"}
            m, members = edit(m, members)
            for name, blob in [("carry.json", json.dumps(m).encode()), *members.items()]:
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                dst.addfile(info, io.BytesIO(blob))
        return bad

    ckpt = f"runs/{r.run_id}/checkpoint.pt"
    c = _fresh_machine(monkeypatch, tmp_path, "c")
    for edit, match in [
        (lambda m, f: (m, {**f, ckpt: f[ckpt][:-1] + b"x"}), "checkpoint.pt is damaged"),
        (lambda m, f: (m, {k: v for k, v in f.items() if k != ckpt}), "checkpoint.pt is named in carry.json but missing"),
        (lambda m, f: ({**m, "files": m["files"] + [{"root": "runs", "path": "../../etc/x", "bytes": 1,
                                                     "sha256": "0"}]}, f), "outside the results, cache and OGBench"),
        (lambda m, f: ({**m, "format": "other/9"}, f), "not a augbench-carry/1 manifest"),
        (lambda m, f: ({**m, "files": 3}, f), "no list of files"),
    ]:
        with pytest.raises(BenchError, match=match):
            carry.unpack(rewrite(edit))
        assert not c["cache"].exists() and not c["results"].exists()
    assert len(manifest["files"]) > 3


def test_pack_refuses_a_run_that_is_training_now(tmp_path, toy_file, monkeypatch):
    import fcntl
    study_file = tmp_path / "study.yaml"
    study_file.write_text(STUDY)
    a = _fresh_machine(monkeypatch, tmp_path, "a", toy_file)
    [r] = sweep.expand(study_file)[1]
    interrupt_at(r.request, 10)
    with open(a["results"] / "runs" / r.run_id / ".claim", "w") as held:  # as a live trainer holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        res = subprocess.run([sys.executable, "-m", "bench.cli", "carry", "pack", str(study_file),
                              str(tmp_path / "c.tar")], capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert f"({r.run_id}) is training now" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.tar").exists()


def test_a_fitted_augmenter_whose_data_is_not_generated_yet_travels_with_its_fit(tmp_path, toy_file, monkeypatch):
    study_file = tmp_path / "study.yaml"
    study_file.write_text(STUDY.replace("  - name: noise\n    config: {scale: 0.05, size: 0.2}",
                                        "  - name: ser\n    config: {preset: cpu-smoke, train_steps: 20}"))
    a = _fresh_machine(monkeypatch, tmp_path, "a", toy_file)
    [r] = sweep.expand(study_file)[1]
    sweep.make_augmentations([r], 1, in_process=True)
    made = (a["cache"] / "augmented" / f"{r.aug_key}.npz").read_bytes()
    (a["cache"] / "augmented" / f"{r.aug_key}.npz").unlink()  # fitted, not sampled yet
    [fit] = [p for p in (a["cache"] / "fitted").iterdir() if p.suffix == ".pt"]
    manifest = carry.pack(study_file, tmp_path / "c.tar")
    assert manifest["runs"] == []  # no run has started: only the fit and the data travel
    assert {f"{e['root']}/{e['path']}" for e in manifest["files"]} == {
        f"cache/fitted/{fit.name}", "cache/datasets/toy-maze.npz", "cache/datasets/toy-maze-val.npz",
        "cache/datasets/toy-maze.augbench.json"}

    b = _fresh_machine(monkeypatch, tmp_path, "b")
    carry.unpack(tmp_path / "c.tar")
    [rb] = sweep.expand(study_file)[1]
    from methods import AUGMENTERS

    called = []
    monkeypatch.setattr(AUGMENTERS.get("ser"), "fit", lambda self, ds: called.append(1))
    sweep.make_augmentations([rb], 1, in_process=True)
    assert called == []  # the carried fit is used, not fitted again
    assert (b["cache"] / "augmented" / f"{r.aug_key}.npz").read_bytes() == made
