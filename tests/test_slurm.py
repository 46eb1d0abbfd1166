"""`bench sweep --executor slurm` against a real single-node SLURM cluster (`.ci/slurm.sh start`).

Where no cluster answers, these skip with the reason printed, unless AUGBENCH_REQUIRE_SLURM is set (CI sets it,
so there a skipped real-SLURM test is a failure)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import sweep

pytestmark = pytest.mark.xdist_group("slurm")  # one worker runs them in order: they share the cluster

STUDY = """\
name: {name}
datasets:
  - {{name: toy-maze, tasks: [1]}}
augmenters:
{augmenters}
algos:
  - name: iql
    config: {{batch_size: 16, hidden_units: [32, 32]}}
seeds: {seeds}
training: {{steps: {steps}, eval_every: {every}}}
evaluation: {{episodes: 1}}
executor:
  kind: slurm
  slurm: {{cpus_per_task: 1, mem_gb: 1, timeout_min: 15, array_parallelism: 2}}
"""


def study(tmp_path, name="slurm-toy", augmenters="  - name: none", seeds="[0, 1]", steps=20, every=10) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(STUDY.format(name=name, augmenters=augmenters, seeds=seeds, steps=steps, every=every))
    return p


def bench(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def squeue(study_name: str) -> list[tuple[str, str]]:
    """(job id, state) of this study's jobs only."""
    out = subprocess.run(["squeue", "-h", "-r", "-n", f"augbench-{study_name}", "-o", "%i %T"], capture_output=True,
                         text=True).stdout
    return [tuple(line.split()) for line in out.strip().splitlines() if line.strip()]


def wait_until(predicate, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def plugin_path(tmp_path: Path) -> Path:
    """A third-party augmenter that always fails, registered through an entry point (a dist-info on PYTHONPATH)."""
    site = tmp_path / "plugins"
    (site / "boom_aug-0.1.dist-info").mkdir(parents=True)
    (site / "boom_aug-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: boom-aug\nVersion: 0.1\n")
    (site / "boom_aug-0.1.dist-info" / "entry_points.txt").write_text("[augbench.augmenters]\nboom = boom_aug:Boom\n")
    (site / "boom_aug.py").write_text(
        "from methods.base import Augmenter, AugmenterConfig\n\n"
        "class Boom(Augmenter):\n"
        "    name = 'boom'\n    config_class = AugmenterConfig\n    output = 'transitions'\n\n"
        "    def fit(self, dataset):\n        raise RuntimeError('boom: this augmenter always fails')\n\n"
        "    def generate(self):\n        return None\n")
    return site


def test_sweep_through_sbatch_arrays_with_a_failing_task(slurm_cluster, tmp_path, toy_file, results):
    site = plugin_path(tmp_path)
    env = {"PYTHONPATH": str(site)}
    p = study(tmp_path, augmenters="  - name: none\n  - name: boom", seeds="[0]")
    res = bench("sweep", str(p), env=env, timeout=600)
    assert res.returncode == 1, res.stdout + res.stderr  # a failure is reported, and the exit code says so
    assert "1 runs done, 1 failed" in res.stdout
    assert "boom: this augmenter always fails" in res.stdout and "log " in res.stdout
    status = bench("status", str(p), env=env)
    assert "done 1" in status.stdout and "failed 1" in status.stdout and "always fails" in status.stdout
    accounting = subprocess.run(["sacct", "-X", "-n", "-o", "JobName%30,State"], capture_output=True, text=True)
    assert "augbench-slurm-toy" in accounting.stdout  # real sbatch jobs, recorded by real accounting


def test_scancel_then_rerun_completes_only_the_missing_work(slurm_cluster, tmp_path, toy_file, results):
    p = study(tmp_path, name="slurm-cancel", steps=400, every=100)
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "sweep", str(p)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    running = wait_until(lambda: [j for j, state in squeue("slurm-cancel") if state == "RUNNING"], 240,
                         "a running task")
    victim = running[0]
    subprocess.run(["scancel", victim], check=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out + err
    assert "1 runs done, 1 failed" in out and "UncompletedJobError" in out, out
    _, runs = sweep.expand(p)
    states = sweep.run_states()
    assert sorted(states.get(r.run_id, "pending") == "done" for r in runs) == [False, True]
    again = bench("sweep", str(p), timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 runs done, 0 failed" in again.stdout  # exactly the missing run
    assert all(sweep.run_states()[r.run_id] == "done" for r in runs)


NO_CHILD = """\
import subprocess, sys
def refuse(*a, **k):
    raise RuntimeError("started a process")
subprocess.Popen = refuse
if sys.argv[1] == "bench":
    import bench
import gymnasium.envs.mujoco.mujoco_rendering  # what every MuJoCo environment imports, glfw with it
"""


@pytest.mark.parametrize("first", ["bench", "nothing"])
def test_a_mujoco_environment_starts_no_child_process_that_scancel_could_kill(first, tmp_path):
    # scancel's SIGTERM reaches every process of a job; a child started while the environment is built dies and
    # turned the cancellation into "cannot build the evaluation environment". `import bench` names pyGLFW's
    # library so that no child starts; without it (the known answer) pyGLFW starts one per candidate library.
    env = {k: v for k, v in os.environ.items() if k != "PYGLFW_LIBRARY"}
    proc = subprocess.run([sys.executable, "-c", NO_CHILD, first], capture_output=True, text=True, env=env)
    if first == "bench":
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0 and "started a process" in proc.stderr


def test_requeued_task_resumes_from_its_checkpoint(slurm_cluster, tmp_path, toy_file, results):
    # SLURM's requeue sends SIGTERM (submitit ignores it) and SIGKILL KillWait (5 s) later: the run must be long
    # enough that the old process cannot finish meanwhile, or the requeued task would only find its result.
    p = study(tmp_path, name="slurm-requeue", seeds="[0]", steps=5000, every=100)
    _, runs = sweep.expand(p)
    run_dir = results / "runs" / runs[0].run_id
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "sweep", str(p)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_until(lambda: (run_dir / "checkpoint.pt").exists(), 300, "the first checkpoint")
    job = wait_until(lambda: [j for j, state in squeue("slurm-requeue") if state == "RUNNING"], 60,
                     "the running task")[0]
    subprocess.run(["scontrol", "requeue", job], check=True)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out + err
    result = json.loads((run_dir / "result.json").read_text())
    assert result["grad_steps"] == 5000
    assert 100 <= result["resumed_from_step"] < 5000  # resumed from a checkpoint, not from step 0
    rows = (run_dir / "curve.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(s) for s in range(100, 5001, 100)]


def test_generated_sbatch_script_carries_the_study_resources(tmp_path, toy_file, results, monkeypatch):
    """Runs everywhere (no cluster needed): the sbatch text submitit writes from a study's executor block.
    submitit's SlurmExecutor refuses to exist where no `srun` is on PATH, so a machine without SLURM gets a
    stand-in that fails if anything calls it (only the script's text is made here, nothing is submitted)."""
    import shutil

    if shutil.which("srun") is None:
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "srun").write_text("#!/bin/sh\necho 'srun stand-in: not a cluster' >&2\nexit 1\n")
        (fake / "srun").chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    p = study(tmp_path, name="resources")
    p.write_text(p.read_text().replace(
        "slurm: {cpus_per_task: 1, mem_gb: 1, timeout_min: 15, array_parallelism: 2}",
        "slurm: {partition: gpu, qos: high, account: lab, gpus_per_node: 1, cpus_per_task: 6, mem_gb: 24, "
        "timeout_min: 90, array_parallelism: 16, additional: {constraint: h100}}"))
    st, _ = sweep.expand(p)
    ex = sweep.make_executor(st, tmp_path / "logs")._executor  # submitit's SlurmExecutor behind AutoExecutor
    ex.parameters["map_count"] = 40
    text = ex._make_submission_file_text("python -m something", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --qos=high", "#SBATCH --account=lab", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --mem=24GB", "#SBATCH --time=90", "#SBATCH --array=0-39%16",
                 "#SBATCH --constraint=h100", "#SBATCH --job-name=augbench-resources"):
        assert line in text, line


def test_packed_runs_share_jobs(slurm_cluster, tmp_path, toy_file, results):
    p = study(tmp_path, name="slurm-packed", seeds="[0, 1, 2, 3]")
    p.write_text(p.read_text().replace("array_parallelism: 2}", "array_parallelism: 2, runs_per_job: 2}"))
    res = bench("sweep", str(p), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 runs done, 0 failed" in res.stdout
    tasks = wait_until(lambda: [line for line in subprocess.run(
        ["sacct", "-X", "-n", "--name", "augbench-slurm-packed", "-o", "JobID%20,State"], capture_output=True,
        text=True).stdout.splitlines() if "COMPLETED" in line], 30, "accounting records")
    assert len(tasks) == 2  # 4 runs in 2 array tasks


def test_restarted_launcher_waits_on_queued_jobs_instead_of_resubmitting(slurm_cluster, tmp_path, toy_file, results):
    """Issue 12: kill -9 the launcher while its array is queued, run it again: nothing is submitted twice,
    `bench status` shows the queued runs with their job ids, and the second launcher collects the first's jobs."""
    import signal

    def accounted() -> set[str]:
        return set(subprocess.run(["sacct", "-X", "-n", "--name", "augbench-slurm-restart", "-o", "JobID%20"],
                                  capture_output=True, text=True).stdout.split())

    before = accounted()  # the cluster outlives a test: earlier runs of this test are in its accounting
    p = study(tmp_path, name="slurm-restart")
    p.write_text(p.read_text().replace("array_parallelism: 2}", "array_parallelism: 2, additional: {hold: true}}"))
    first = subprocess.Popen([sys.executable, "-m", "bench.cli", "sweep", str(p)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    ledger = results / "slurm" / "slurm-restart" / "ledger.json"
    wait_until(lambda: ledger.exists() and len(squeue("slurm-restart")) == 2, 120, "two held tasks in the ledger")
    first.send_signal(signal.SIGKILL)
    first.wait()
    held = sorted(j for j, _ in squeue("slurm-restart"))
    status = bench("status", str(p))
    assert "queued 2" in status.stdout, status.stdout
    for jid in held:
        assert f"(SLURM job {jid}, PENDING)" in status.stdout, status.stdout
    second = subprocess.Popen([sys.executable, "-m", "bench.cli", "sweep", str(p)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # long enough for a resubmission to show in the queue
    assert sorted(j for j, _ in squeue("slurm-restart")) == held  # nothing submitted again
    subprocess.run(["scontrol", "release", held[0].split("_")[0]], check=True)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, out + err
    assert "2 runs done, 0 failed" in out and "2 of them already queued by an earlier launcher" in out, out
    assert sorted(accounted() - before) == held  # one array of two tasks, ever
    _, runs = sweep.expand(p)
    assert all(sweep.run_states()[r.run_id] == "done" for r in runs)
