"""The SLURM executor, through submitit: the augmentation stage as one array, training runs as packed arrays."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.run import RunRequest, results_root
from bench.sweep.local import _augment_job, _init_worker, _train_job
from bench.sweep.plan import PlannedRun, distinct_augmentations
from bench.sweep.schema import Study


def slurm_available() -> str | None:
    """None when a SLURM controller answers here, else the reason it does not."""
    import shutil
    import subprocess

    if not shutil.which("sinfo"):
        return "no SLURM client (sinfo) on PATH; start a cluster with `.ci/slurm.sh start` (root, Debian packages)"
    res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    if res.returncode != 0 or not res.stdout.strip():
        return f"no SLURM controller answers (`.ci/slurm.sh start` starts one): {res.stderr.strip()[:120]}"
    return None


def _clear(todo: list[PlannedRun], root: Path) -> None:
    """--force on a cluster: drop the old results first, so a requeued job resumes instead of restarting."""
    import shutil

    for r in todo:
        if r.run_id:
            shutil.rmtree(root / "runs" / r.run_id, ignore_errors=True)


class TrainJob:
    """One SLURM array task: one run, or several packed runs in parallel processes sharing the job's GPU.

    Runs checkpoint after every evaluation, so a job that SLURM requeues (preemption, `scontrol requeue`) or
    that hits its time limit starts again and each run resumes where its last checkpoint left it.  submitit
    calls `checkpoint()` only on its own USR2 signal (time limit, preemption); it resubmits the same runs.
    """

    def __init__(self, requests: list[RunRequest], root: str):
        self.requests = requests
        self.root = root

    def __call__(self) -> list[tuple[str, str, str]]:
        if len(self.requests) == 1:
            return [_train_job(self.requests[0], False, self.root)]
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // len(self.requests))
        with ProcessPoolExecutor(max_workers=len(self.requests), mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            return list(pool.map(_train_job, self.requests, [False] * len(self.requests),
                                 [self.root] * len(self.requests)))

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.requests, self.root))


def _augment_many(requests: list[RunRequest]) -> list[str]:
    return [_augment_job(r) for r in requests]


def _submit(executor, fn, items: list, max_array: int) -> list:
    jobs = []
    for i in range(0, len(items), max_array):
        with executor.batch():
            jobs += [executor.submit(fn, *args) for args in items[i:i + max_array]]
    return jobs


def _log_tail(job, n: int = 3) -> str:
    try:
        text = Path(job.paths.stderr).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-n:])


def slurm_parameters(study: Study) -> dict:
    """submitit parameters from the study's `executor.slurm` block."""
    s = study.executor.slurm
    params = dict(timeout_min=s.timeout_min, slurm_array_parallelism=s.array_parallelism,
                  cpus_per_task=s.cpus_per_task, mem_gb=s.mem_gb, name=f"augbench-{study.name}",
                  slurm_additional_parameters=dict(s.additional))
    if s.gpus_per_node:
        params["gpus_per_node"] = s.gpus_per_node
    for key in ("partition", "qos", "account"):
        if getattr(s, key):
            params[f"slurm_{key}"] = getattr(s, key)
    return params


def make_executor(study: Study, folder: Path, cluster: str = "slurm"):
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**slurm_parameters(study))
    return executor


def run_slurm(study: Study, todo: list[PlannedRun], force: bool, progress=None, poll_s: float = 1.0) -> dict:
    """Stage 1 as one array (the launcher waits for it), stage 2 as arrays of packed runs; every task is
    collected, failed or cancelled ones with their log path and last lines, and none can hang the launcher."""
    root = results_root().resolve()
    if force:
        _clear(todo, root)
    s = study.executor.slurm
    executor = make_executor(study, root / "slurm" / study.name / "%j")
    counts = {"done": 0, "failed": 0, "elsewhere": 0, "augmentations": 0}
    failures: list[tuple[str, str]] = []

    augs = distinct_augmentations(todo)
    counts["augmentations"] = len(augs)
    if augs:
        aug_jobs = _submit(executor, _augment_many, [([req],) for req in augs.values()], s.max_array_size)
        for job in aug_jobs:
            try:
                job.result()
            except Exception as e:  # noqa: BLE001
                failures.append(("augmentation", f"{type(e).__name__}: {str(e).strip().splitlines()[-1]} "
                                                 f"(log {job.paths.stderr})"))

    packs = [todo[i:i + s.runs_per_job] for i in range(0, len(todo), s.runs_per_job)]
    items = [(TrainJob([r.request for r in pack], str(root)),) for pack in packs]
    jobs = _submit(executor, lambda job: job(), items, s.max_array_size) if items else []
    pending = dict(zip(jobs, packs))
    while pending:
        for job in list(pending):
            if not job.done():
                continue
            pack = pending.pop(job)
            try:
                results = job.result()
            except Exception as e:  # noqa: BLE001  (failed, cancelled or lost: collected, never waited on)
                msg = str(e).strip().splitlines()
                for r in pack:
                    counts["failed"] += 1
                    failures.append((r.label, f"{type(e).__name__}: {msg[-1] if msg else ''} "
                                              f"(job {job.job_id}, log {job.paths.stderr}; {_log_tail(job)})"))
                continue
            for r, (status, rid, message) in zip(pack, results):
                counts[status] += 1
                if status == "failed":
                    failures.append((r.label, f"{message} (job {job.job_id}, log {job.paths.stderr})"))
        if progress:
            progress(counts, sum(1 for j in pending if j.state in ("RUNNING", "COMPLETING")))
        if pending:
            time.sleep(poll_s)
    return {**counts, "failures": failures}
