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


def _submit(executor, fn, items: list, max_array: int, record=None) -> list:
    """Submit `items` as arrays of at most `max_array` tasks; `record(jobs, first)` runs right after each array
    is accepted (the ledger), so a launcher killed later never submits those tasks again."""
    jobs = []
    for i in range(0, len(items), max_array):
        with executor.batch():
            batch = [executor.submit(fn, *args) for args in items[i:i + max_array]]
        if record:
            record(batch, i)
        jobs += batch
    return jobs


# ------------------------------------------------------------------------------------------ ledger
# results/slurm/<study>/ledger.json: {"train": {job id: [run ids]}, "augment": {job id: [augmentation keys]}},
# written (atomically) as soon as each array is accepted.  A restarted launcher asks the scheduler which of the
# study's jobs (by the job name it gives them, augbench-<study>) are still queued or running, and waits on those
# instead of submitting their runs again; `bench status` shows them with their job ids.
def ledger_path(study_name: str, root: Path | None = None) -> Path:
    return (root or results_root()) / "slurm" / study_name / "ledger.json"


def read_ledger(study_name: str, root: Path | None = None) -> dict:
    import json

    try:
        data = json.loads(ledger_path(study_name, root).read_text())
        return {"train": dict(data.get("train", {})), "augment": dict(data.get("augment", {}))}
    except (OSError, ValueError, AttributeError):
        return {"train": {}, "augment": {}}


def scheduler_jobs(study_name: str) -> dict[str, str]:
    """job id -> state (PENDING, RUNNING, ...) of the study's jobs the scheduler still holds, array tasks one by
    one (squeue -r); {} where no SLURM client is installed."""
    import shutil
    import subprocess

    from bench.errors import BenchError

    if not shutil.which("squeue"):
        return {}
    res = subprocess.run(["squeue", "-h", "-r", "-n", f"augbench-{study_name}", "-o", "%i %T"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise BenchError(f"squeue failed, so the runs already queued cannot be told apart: {res.stderr.strip()[:160]}")
    return dict(line.split()[:2] for line in res.stdout.strip().splitlines() if len(line.split()) >= 2)


def in_flight(study_name: str, root: Path | None = None) -> dict[str, dict[str, tuple[str, str]]]:
    """{"train": {run id: (job id, state)}, "augment": {key: (job id, state)}} for the ledger's jobs that the
    scheduler still holds."""
    ledger = read_ledger(study_name, root)
    live = scheduler_jobs(study_name) if any(ledger.values()) else {}
    return {stage: {item: (jid, live[jid]) for jid, items in ledger[stage].items() if jid in live for item in items}
            for stage in ("train", "augment")}


def _recorder(study_name: str, root: Path, stage: str, keys_of):
    from bench.io import write_json

    def record(batch, first):
        ledger = read_ledger(study_name, root)
        live = scheduler_jobs(study_name)
        for stg in ledger:  # forget jobs the scheduler has finished with
            ledger[stg] = {j: v for j, v in ledger[stg].items() if j in live}
        for k, job in enumerate(batch):
            ledger[stage][str(job.job_id)] = keys_of(first + k)
        write_json(ledger_path(study_name, root), ledger)

    return record


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
    collected, failed or cancelled ones with their log path and last lines, and none can hang the launcher.
    Runs and augmentations whose jobs (from the ledger) are still queued or running are not submitted again:
    the launcher waits on those jobs as on its own."""
    import submitit

    root = results_root().resolve()
    flying = in_flight(study.name, root)  # this study's jobs still queued or running (a restarted launcher)
    if force:
        _clear([r for r in todo if r.run_id not in flying["train"]], root)  # queued runs are left to their jobs
    s = study.executor.slurm
    folder = root / "slurm" / study.name / "%j"
    executor = make_executor(study, folder)
    counts = {"done": 0, "failed": 0, "elsewhere": 0, "augmentations": 0}
    failures: list[tuple[str, str]] = []

    augs = distinct_augmentations(todo)
    counts["augmentations"] = len(augs)
    waiting = {jid for jid, _ in flying["augment"].values()}  # a restarted launcher: already queued, not again
    new_augs = [(key, req) for key, req in augs.items() if key not in flying["augment"]]
    aug_jobs = [submitit.SlurmJob(folder, jid) for jid in sorted(waiting)]
    if new_augs:
        aug_jobs += _submit(executor, _augment_many, [([req],) for _, req in new_augs], s.max_array_size,
                            record=_recorder(study.name, root, "augment", lambda i: [new_augs[i][0]]))
    for job in aug_jobs:
        try:
            job.result()
        except Exception as e:  # noqa: BLE001
            failures.append(("augmentation", f"{type(e).__name__}: {str(e).strip().splitlines()[-1]} "
                                             f"(log {job.paths.stderr})"))

    by_id = {r.run_id: r for r in todo}
    pending: dict = {}
    for jid in sorted({jid for rid, (jid, _) in flying["train"].items() if rid in by_id}):
        rids = read_ledger(study.name, root)["train"].get(jid, [])
        pending[submitit.SlurmJob(folder, jid)] = [by_id.get(r) for r in rids]  # None: not this launch's run
    fresh = [r for r in todo if r.run_id not in flying["train"]]
    packs = [fresh[i:i + s.runs_per_job] for i in range(0, len(fresh), s.runs_per_job)]
    items = [(TrainJob([r.request for r in pack], str(root)),) for pack in packs]
    record = _recorder(study.name, root, "train", lambda i: [r.run_id for r in packs[i]])
    jobs = _submit(executor, lambda job: job(), items, s.max_array_size, record=record) if items else []
    pending.update(zip(jobs, packs))
    counts["reattached"] = len(todo) - len(fresh)
    while pending:
        for job in list(pending):
            if not job.done():
                continue
            pack = pending.pop(job)
            try:
                results = job.result()
            except Exception as e:  # noqa: BLE001  (failed, cancelled or lost: collected, never waited on)
                msg = str(e).strip().splitlines()
                for r in filter(None, pack):
                    counts["failed"] += 1
                    failures.append((r.label, f"{type(e).__name__}: {msg[-1] if msg else ''} "
                                              f"(job {job.job_id}, log {job.paths.stderr}; {_log_tail(job)})"))
                continue
            for r, (status, rid, message) in zip(pack, results):
                if r is None:
                    continue
                counts[status] += 1
                if status == "failed":
                    failures.append((r.label, f"{message} (job {job.job_id}, log {job.paths.stderr})"))
        if progress:
            progress(counts, sum(1 for j in pending if j.state in ("RUNNING", "COMPLETING")))
        if pending:
            time.sleep(poll_s)
    return {**counts, "failures": failures}
