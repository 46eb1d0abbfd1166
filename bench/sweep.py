"""Studies: one YAML file expands datasets x augmenters x algos x seeds into runs, run by an executor, resumable.

The file is validated whole (pydantic plus the registries) before anything runs; an error names the file, the
line and what is allowed.  Run ids are the content hashes of the runs' canonical configs (bench.run), and a run
whose `result.json` exists is done, so deciding what is left is one directory listing and a set look-up.

Stages: every distinct augmentation (dataset content, augmenter config, seed) runs once, before the training
runs that read it (bench.augment caches it, under an flock that dies with its holder); then the training runs.
A training run that raises leaves `error.json` (its last error lines) instead of `result.json`.
"""

from __future__ import annotations

import fnmatch
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.errors import BenchError, ConfigError, DatasetMissing, NotApplicable
from bench.io import write_json
from bench.run import RunRequest, canonical_config, execute, results_root, run_id


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetEntry(_Model):
    name: str
    tasks: list[int] | None = None  # OGBench singletask task ids; None for datasets without tasks


class AugmenterEntry(_Model):
    name: str
    label: str | None = None  # distinguishes several variants of one augmenter
    config: dict[str, Any] = Field(default_factory=dict)


class AlgoEntry(_Model):
    name: str
    label: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class Training(_Model):
    steps: int = Field(gt=0)
    eval_every: int | None = Field(default=None, gt=0)


class Evaluation(_Model):
    episodes: int = Field(default=10, gt=0)


class Mix(_Model):
    mode: Literal["ratio", "synthetic", "union"] = "ratio"
    ratio: float = Field(default=0.5, ge=0.0, le=1.0)


class Slurm(_Model):
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    gpus_per_node: int = Field(default=0, ge=0)
    cpus_per_task: int = Field(default=2, gt=0)
    mem_gb: float = Field(default=8, gt=0)
    timeout_min: int = Field(default=240, gt=0)
    array_parallelism: int = Field(default=64, gt=0)
    max_array_size: int = Field(default=1000, gt=0)
    runs_per_job: int = Field(default=1, gt=0)
    additional: dict[str, Any] = Field(default_factory=dict)  # extra sbatch options


class Executor(_Model):
    kind: Literal["local", "debug", "slurm"] = "local"
    workers: int = Field(default=2, gt=0)
    slurm: Slurm = Field(default_factory=Slurm)


class Study(_Model):
    name: str
    datasets: list[DatasetEntry] = Field(min_length=1)
    augmenters: list[AugmenterEntry] = Field(min_length=1)
    algos: list[AlgoEntry] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    training: Training
    evaluation: Evaluation = Field(default_factory=Evaluation)
    mix: Mix = Field(default_factory=Mix)
    skip_inapplicable: bool = False  # skip pairs such as DT x a transitions augmenter instead of refusing
    device: str = "auto"
    executor: Executor = Field(default_factory=Executor)


@dataclass
class PlannedRun:
    request: RunRequest  # dataset, task, augmenter, algo, seed, configs
    augmenter_label: str
    algo_label: str
    run_id: str | None  # None when the dataset is not there yet
    aug_key: str | None
    applicable: bool = True

    @property
    def label(self) -> str:
        """dataset/task/augmenter-label/algo-label/seed, for display and `--only` only (dataset names such as
        Minari ids hold '/' themselves, so it is never split back into fields)."""
        r = self.request
        return f"{r.dataset}/{r.task if r.task is not None else '-'}/{self.augmenter_label}/{self.algo_label}/{r.seed}"


# ------------------------------------------------------------------------------------------ loading
def _line_of(root, loc) -> int | None:
    node = root
    line = getattr(node, "start_mark", None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
            if nxt is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return (key.start_mark.line + 1) if key is not None else line.line + 1
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark
    return line.line + 1 if line is not None else None


def load_study(path: Path | str) -> tuple[Study, Any]:
    path = Path(path)
    if not path.exists():
        raise BenchError(f"{path}: no such study file")
    text = path.read_text()
    try:
        root = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise BenchError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise BenchError(f"{path}: a study file is a mapping (name, datasets, augmenters, algos, seeds, training)")
    try:
        study = Study.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        line = _line_of(root, loc)
        field = ".".join(str(p) for p in loc)
        allowed = ""
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = f" (allowed: {', '.join(model.model_fields)})" if model else ""
        raise BenchError(f"{path}:{line}: {field}: {err['msg']}{allowed}") from None
    return study, root


def _model_at(loc) -> type[BaseModel] | None:
    model: Any = Study
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return None
    return model


# ------------------------------------------------------------------------------------------ expansion
def _request(study: Study, dataset: str, task: int | None, a: AugmenterEntry, g: AlgoEntry, seed: int) -> RunRequest:
    """The one place a study entry becomes a run request."""
    return RunRequest(dataset=dataset, task=task, algo=g.name, augmenter=a.name, seed=seed,
                      steps=study.training.steps, eval_every=study.training.eval_every,
                      eval_episodes=study.evaluation.episodes, augmenter_config=a.config, algo_config=g.config,
                      mix=study.mix.model_dump(), device=study.device)


# A run field -> where a study file sets it.
_STUDY_FIELDS = {"steps": ("training", "steps"), "eval_every": ("training", "eval_every"),
                 "eval_episodes": ("evaluation", "episodes")}


def _config_location(e: ConfigError, ai: int, gi: int) -> tuple:
    if e.owner == "algo":
        return ("algos", gi, "config")
    if e.owner == "augmenter":
        return ("augmenters", ai)
    if e.owner == "mix":
        return ("mix",)
    return _STUDY_FIELDS.get(e.field or "", ("training",))


def expand(path: Path | str, load_data: bool = True) -> tuple[Study, list[PlannedRun]]:
    """Check the whole study against the registries and expand it into runs (before anything runs)."""
    from algos import TRAINERS
    from bench import data
    from bench.augment import cache_key
    from bench.run import check_request
    from methods import AUGMENTERS

    path = Path(path)
    study, root = load_study(path)

    def fail(loc, msg):
        raise BenchError(f"{path}:{_line_of(root, loc)}: {msg}")

    for i, a in enumerate(study.augmenters):
        if a.name not in AUGMENTERS.names():
            fail(("augmenters", i, "name"), f"unknown augmenter '{a.name}' (allowed: {', '.join(AUGMENTERS.names())})")
    for i, a in enumerate(study.algos):
        if a.name not in TRAINERS.names():
            fail(("algos", i, "name"), f"unknown algo '{a.name}' (allowed: {', '.join(TRAINERS.names())})")
    for kind, entries in (("augmenters", study.augmenters), ("algos", study.algos)):
        labels = [e.label or e.name for e in entries]
        for i, lab in enumerate(labels):
            if labels.index(lab) != i:
                fail((kind, i), f"two {kind} share the label '{lab}'; give each variant its own label")

    from bench.provenance import resolve_device

    device = resolve_device(study.device)
    # Resolve each augmenter x algo pair once (configs, presets, applicability); runs differ only by data and seed.
    pairs: dict[tuple[int, int], "Resolved | BenchError"] = {}
    aug_dicts: dict[int, dict] = {}
    for ai, a in enumerate(study.augmenters):
        for gi, g in enumerate(study.algos):
            try:
                pairs[ai, gi] = check_request(_request(study, "-", None, a, g, 0))
                aug_dicts[ai] = pairs[ai, gi].aug_config.to_dict()
            except NotApplicable as e:
                if not study.skip_inapplicable:
                    fail(("augmenters", ai), f"{e}; set skip_inapplicable: true to skip such pairs")
                pairs[ai, gi] = e
            except ConfigError as e:
                fail(_config_location(e, ai, gi), str(e))

    runs: list[PlannedRun] = []
    for di, d in enumerate(study.datasets):
        known = d.name in data.generable() or data.is_minari_name(d.name) or data.is_ogbench_name(d.name)
        if not known:
            fail(("datasets", di, "name"), str(data.unknown(d.name)))
        for task in d.tasks or [None]:
            dataset = None
            if load_data:
                try:
                    dataset = data.load(d.name, task)
                except DatasetMissing:
                    pass  # planned without run ids; `bench sweep` makes or asks for it before running
                except BenchError as e:
                    fail(("datasets", di), str(e))
            for ai, a in enumerate(study.augmenters):
                for gi, g in enumerate(study.algos):
                    resolved = pairs[ai, gi]
                    for seed in study.seeds:
                        req = _request(study, d.name, task, a, g, seed)
                        labels = dict(augmenter_label=a.label or a.name, algo_label=g.label or g.name)
                        if isinstance(resolved, BenchError):
                            runs.append(PlannedRun(req, **labels, run_id=None, aug_key=None, applicable=False))
                            continue
                        rid = key = None
                        if dataset is not None:
                            rid = run_id(canonical_config(req, dataset, device, resolved))
                            key = cache_key(dataset, a.name, aug_dicts[ai], seed)
                        runs.append(PlannedRun(req, **labels, run_id=rid, aug_key=key))
    return study, runs


# ------------------------------------------------------------------------------------------ state
def run_states(root: Path | None = None) -> dict[str, str]:
    """run_id -> 'done' | 'failed' | 'incomplete', from one listing of results/runs (no process per run)."""
    runs_dir = (root or results_root()) / "runs"
    states: dict[str, str] = {}
    if not runs_dir.exists():
        return states
    for entry in os.scandir(runs_dir):
        if not entry.is_dir():
            continue
        names = set(os.listdir(entry.path))
        states[entry.name] = "done" if "result.json" in names else "failed" if "error.json" in names else "incomplete"
    return states


def select(runs: list[PlannedRun], states: dict[str, str], force: bool, retry_failed: bool,
           only: str | None) -> list[PlannedRun]:
    todo = []
    for r in runs:
        if not r.applicable or (only and not fnmatch.fnmatch(r.label, only)):
            continue
        state = states.get(r.run_id or "", "pending")
        if force or state in ("pending", "incomplete") or (state == "failed" and retry_failed):
            todo.append(r)
    return todo


def distinct_augmentations(runs: list[PlannedRun]) -> dict[str, RunRequest]:
    """One request per distinct augmentation among `runs`, keyed by its cache key (dataset content, augmenter
    config, seed), or by (dataset, task, augmenter label, seed) while the dataset is not there yet; runs whose
    augmenter declares no output (`none`) need none."""
    from methods import AUGMENTERS

    out: dict[str, RunRequest] = {}
    for r in runs:
        q = r.request
        if r.applicable and AUGMENTERS.get(q.augmenter).output != "none":
            out.setdefault(r.aug_key or f"{q.dataset}/{q.task}/{r.augmenter_label}/{q.seed}", q)
    return out


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
    """(status, run_id, message).  Errors are recorded in error.json, never raised to the launcher."""
    from bench.run import plan

    rid = "?"
    try:
        planned = plan(req)
        rid = planned.run_id
        run_dir = Path(root) / "runs" / rid
        (run_dir / "error.json").unlink(missing_ok=True)
        execute(req, force=force, root=Path(root), planned=planned)
        return "done", rid, ""
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
    counts = {"done": 0, "failed": 0, "augmentations": len(augs)}
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


def describe(runs: list[PlannedRun], states: dict[str, str]) -> dict[str, int]:
    out = {"runs": 0, "done": 0, "failed": 0, "incomplete": 0, "pending": 0, "not applicable": 0}
    for r in runs:
        if not r.applicable:
            out["not applicable"] += 1
            continue
        out["runs"] += 1
        out[states.get(r.run_id or "", "pending")] += 1
    return out


def error_lines(run_id_: str, root: Path | None = None) -> list[str]:
    import json

    p = (root or results_root()) / "runs" / run_id_ / "error.json"
    try:
        return json.loads(p.read_text()).get("last_lines", [])[-3:]
    except (OSError, ValueError):
        return []


# ------------------------------------------------------------------------------------------ SLURM
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
    counts = {"done": 0, "failed": 0, "augmentations": 0}
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
