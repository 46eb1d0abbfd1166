"""The local executors: a process pool of workers (`local`), or in-process (`debug`)."""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from bench.errors import RunningElsewhere
from bench.io import write_json
from bench.run import RunRequest, execute, results_root
from bench.sweep.plan import PlannedRun, augmentation_key, distinct_augmentations


# ------------------------------------------------------------------------------------------ workers
def _augment_job(req: RunRequest) -> str:
    from bench import data
    from bench.augment import augment
    from methods import AUGMENTERS

    from bench.provenance import resolve_device

    ds = data.load(req.dataset, req.task)
    cfg = AUGMENTERS.get(req.augmenter).resolve_config(req.augmenter_config)
    _, key, _ = augment(ds, req.augmenter, cfg, req.seed, resolve_device(req.device))
    return key


def _train_job(req: RunRequest, force: bool, root: str) -> tuple[str, str, str]:
    """(status, run_id, message): 'done', 'failed' (recorded in error.json, never raised to the launcher) or
    'elsewhere' (another process is training it)."""
    from bench.run import plan

    rid = "?"
    try:
        planned = plan(req)
        rid = planned.run_id
        execute(req, force=force, root=Path(root), planned=planned)
        return "done", rid, ""
    except RunningElsewhere as e:  # another launcher trains it now: nothing written, nothing to record
        return "elsewhere", rid, str(e)
    except BaseException as e:  # noqa: BLE001  (a failed run must never take the launcher down)
        tb = traceback.format_exc().strip().splitlines()
        if rid != "?":
            write_json(Path(root) / "runs" / rid / "error.json",
                       {"run_id": rid, "error": f"{type(e).__name__}: {e}", "last_lines": tb[-12:]})
        return "failed", rid, f"{type(e).__name__}: {e}"


def worker_threads(workers: int) -> int:
    """Torch threads per worker: the CPU's cores shared out among the workers, unless OMP_NUM_THREADS says
    how many (for a machine that other jobs share: more threads than free cores slow every job down)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 1) // workers)


def _init_worker(threads: int, launcher_pid: int | None = None) -> None:
    """Worker set-up: its share of the CPU threads, and a watchdog that ends the worker when its launcher is
    gone (killed, or stopped by Ctrl-C), so no orphan goes on training."""
    import threading

    import torch

    torch.set_num_threads(threads)
    if launcher_pid is not None:
        def watch():
            while True:
                time.sleep(1.0)
                if os.getppid() != launcher_pid:
                    os._exit(1)
        threading.Thread(target=watch, daemon=True).start()


def make_augmentations(todo: list[PlannedRun], workers: int, in_process: bool = False) -> dict:
    """Only the distinct augmentations `todo` needs (fit, sample, cache), no training: a study's generated data
    made ahead of its training budget, or on one machine for runs trained on another.  Returns how many there
    are, how many were made (or found cached) and the failures."""
    augs = distinct_augmentations(todo)
    failures: list[tuple[str, str]] = []
    done = 0
    if in_process or workers == 1 or len(augs) <= 1:
        if not in_process:
            _init_worker(worker_threads(1))
        for key, req in augs.items():
            try:
                _augment_job(req)
                done += 1
            except Exception as e:  # noqa: BLE001  (one failed augmentation must not stop the others)
                failures.append((key, f"{type(e).__name__}: {e}"))
    else:
        import multiprocessing as mp

        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(worker_threads(workers), os.getpid()))
        try:
            futs = {pool.submit(_augment_job, req): key for key, req in augs.items()}
            for fut in futs:
                exc = fut.exception()
                if exc is None:
                    done += 1
                else:
                    failures.append((futs[fut], f"{type(exc).__name__}: {exc}"))
        except BaseException:  # Ctrl-C, SIGTERM, or a pool that broke: stop the fits under way now (they resume
            _stop(pool)        # from their checkpoints)
            raise
        pool.shutdown(wait=True)
    return {"augmentations": len(augs), "augmented": done, "failures": failures}


def run_local(todo: list[PlannedRun], workers: int, force: bool, progress=None, in_process: bool = False) -> dict:
    """The distinct augmentations and the training runs, each run as soon as its augmentation is made.  Returns
    counts and failures."""
    root = str(results_root().resolve())
    augs = distinct_augmentations(todo)
    counts = {"done": 0, "failed": 0, "elsewhere": 0, "augmentations": len(augs)}
    failures: list[tuple[str, str]] = []
    if in_process:
        for req in augs.values():
            try:
                _augment_job(req)
            except Exception as e:  # the runs that need it fail (and say why) in stage 2
                failures.append(("augmentation", f"{type(e).__name__}: {e}"))
        for r in todo:
            status, rid, msg = _train_job(r.request, force, root)
            counts[status] += 1
            if status == "failed":
                failures.append((r.label, msg))
            if progress:
                progress(counts, 0)
        return {**counts, "failures": failures}
    threads = worker_threads(workers)
    started = time.time()
    breaks: dict[int, int] = {}  # run index -> times a worker died while it was unfinished
    remaining = list(range(len(todo)))
    aug_breaks = [0]
    while remaining:
        remaining, augs = _pool_pass(todo, remaining, workers, threads, force, root, augs, counts, failures,
                                     breaks, aug_breaks, started, progress)
    return {**counts, "failures": failures}


def _pool_pass(todo, indices, workers, threads, force, root, augs, counts, failures, breaks, aug_breaks, started,
               progress):
    """Run the augmentations `augs` and the training runs `indices` of `todo` in one process pool.  A run is
    submitted as soon as the augmentation it needs is made (a run that needs none at once, queued behind the
    augmentations), so no worker waits for augmentations other runs need.  Returns (the indices to run again, the
    augmentations still to make) in a fresh pool because a worker died (kill -9, the OOM killer) and took the pool
    down.  A run that was under way when a worker died twice is recorded as failed; the others are simply run
    again.  Augmentations lost with a pool are made again in the next one (each is cached atomically under its own
    lock, so the finished ones are found, not redone), twice at most; after that the runs that need them make them
    themselves."""
    import multiprocessing as mp

    again: list[int] = []
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(threads, os.getpid()))
    left = dict(augs)  # the augmentations not made yet
    waiting: dict[str, list[int]] = {}  # augmentation key -> the runs that wait for it
    ready: list[int] = []
    for i in indices:
        key = augmentation_key(todo[i])
        (waiting.setdefault(key, []) if key in left else ready).append(i)
    pending: dict = {}
    broken = [False]

    def submit(idx: list[int]) -> None:
        for n, i in enumerate(idx):
            try:
                pending[pool.submit(_train_job, todo[i].request, force, root)] = i
            except BrokenProcessPool:  # a worker died before this run was queued: it never started
                broken[0] = True
                again.extend(idx[n:])
                return

    try:
        aug_futs = {}
        for key, req in left.items():
            try:
                aug_futs[pool.submit(_augment_job, req)] = key
            except BrokenProcessPool:
                broken[0] = True
                break
        submit(ready)
        while aug_futs or pending:
            finished, _ = wait([*aug_futs, *pending], timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                if fut in aug_futs:
                    key = aug_futs.pop(fut)
                    exc = fut.exception()
                    if isinstance(exc, BrokenProcessPool):
                        broken[0] = True
                        continue
                    left.pop(key)
                    if exc is not None:  # the runs that need it fail (and say why) when they run
                        failures.append(("augmentation", f"{type(exc).__name__}: {exc}"))
                    if broken[0]:
                        again.extend(waiting.pop(key, []))
                    else:
                        submit(waiting.pop(key, []))
                    continue
                i = pending.pop(fut)
                r = todo[i]
                try:
                    status, rid, msg = fut.result()
                except BrokenProcessPool:
                    broken[0] = True
                    if not _was_under_way(r, root, started):
                        again.append(i)  # it never started: run it in the next pool
                        continue
                    breaks[i] = breaks.get(i, 0) + 1
                    if breaks[i] < 2:
                        again.append(i)  # retried once
                        continue
                    status, msg = "failed", ("its worker process died twice while training it (killed by a "
                                             "signal or the out-of-memory killer)")
                counts[status] += 1
                if status == "failed":
                    failures.append((r.label, msg))
            if progress:
                progress(counts, min(workers, len(pending)))
    except KeyboardInterrupt:
        _stop(pool)
        raise
    pool.shutdown(wait=True)
    again.extend(i for key in left for i in waiting.pop(key, []))  # their augmentation was lost with the pool
    if left:
        aug_breaks[0] += 1
        if aug_breaks[0] >= 2:
            failures.append(("augmentation", "a worker process died twice while augmentations were made (killed "
                                             "by a signal or the out-of-memory killer); the runs that need the "
                                             "missing augmentations make them themselves"))
            left = {}
    return sorted(again), left


def _was_under_way(r: PlannedRun, root: str, started: float) -> bool:
    """Whether this sweep had started training the run (its config.json was written since the sweep began)."""
    if not r.run_id:
        return False
    config = Path(root) / "runs" / r.run_id / "config.json"
    return config.exists() and config.stat().st_mtime >= started


def _stop(pool: ProcessPoolExecutor) -> None:
    """Ctrl-C: stop now, not after the runs under way (they resume from their checkpoints next time)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    for proc in procs:  # killed before the shutdown, so the pool's manager thread never waits on a busy worker
        with contextlib.suppress(Exception):
            proc.kill()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(5)
    pool.shutdown(wait=False, cancel_futures=True)
    # A bounded wait for the pool's manager thread, which closes the pool's queues once it sees the dead workers
    # (their semaphores would otherwise be reported as leaked at exit); never endless, even if a worker outlived
    # its kill (stuck in the kernel).
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(5)
