"""The local executors: a process pool of workers (`local`), or in-process (`debug`)."""

from __future__ import annotations

import os
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from bench.errors import RunningElsewhere
from bench.io import write_json
from bench.run import RunRequest, execute, results_root
from bench.sweep.plan import PlannedRun, distinct_augmentations


# ------------------------------------------------------------------------------------------ workers
def _augment_job(req: RunRequest) -> str:
    from bench import data
    from bench.augment import augment
    from methods import AUGMENTERS

    from bench.provenance import resolve_device

    ds = data.load(req.dataset, req.task)
    cfg = AUGMENTERS.get(req.augmenter).config_class.from_dict(req.augmenter_config)
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


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_local(todo: list[PlannedRun], workers: int, force: bool, progress=None, in_process: bool = False) -> dict:
    """Stage 1: distinct augmentations; stage 2: training runs.  Returns counts and failures."""
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
    threads = max(1, (os.cpu_count() or 1) // workers)
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        for fut in [pool.submit(_augment_job, req) for req in augs.values()]:
            exc = fut.exception()
            if exc is not None:
                failures.append(("augmentation", f"{type(exc).__name__}: {exc}"))
        pending = {pool.submit(_train_job, r.request, force, root): r for r in todo}
        while pending:
            finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                r = pending.pop(fut)
                status, rid, msg = fut.result()
                counts[status] += 1
                if status == "failed":
                    failures.append((r.label, msg))
            if progress:
                progress(counts, min(workers, len(pending)))
    return {**counts, "failures": failures}
