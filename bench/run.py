"""One run end to end: dataset -> augmenter -> trainer -> evaluation -> results/runs/<run_id>/.

Files (each written atomically; `result.json` last, so its presence means the run finished):
    config.json   the full canonical config (dataset hash, resolved augmenter/trainer/mixing configs, seed, steps)
    curve.csv     step, score, success_rate, return, wall seconds: one row per evaluation
    policy.d3     the trained policy (d3rlpy's save format; `policy.pt`, a torch file, for the harness's own DROL)
    checkpoint.pt (+ checkpoint-<step>.model) while training: step, curve, RNG states (the batch sampler's
                  too) and weights/optimizers,
                  saved after every evaluation; a run that is started again resumes there (then they go)
    result.json   final score, mean of the last three evaluations, wall time, gradient steps/s, device,
                  package versions, git commit and whether the tree was dirty
`run_id` hashes the canonical config, so the same run is recognised later and not repeated unless forced.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench import provenance
from bench.errors import BenchError, ConfigError, NotApplicable, RunningElsewhere
import numpy as np

from bench.io import atomic_open, ensure_dir, write_bytes, write_json


@dataclass
class RunRequest:
    dataset: str
    algo: str
    augmenter: str = "none"
    task: int | None = None
    seed: int = 0
    steps: int = 2000
    eval_every: int | None = None  # default: steps (one evaluation at the end)
    eval_episodes: int = 10
    augmenter_config: dict = field(default_factory=dict)
    algo_config: dict = field(default_factory=dict)
    mix: dict = field(default_factory=dict)
    device: str = "auto"


CONFIG_SCHEMA = 2


def results_root() -> Path:
    return Path(os.environ.get("AUGBENCH_RESULTS") or "results")


def _check_numbers(req: RunRequest) -> int:
    """The run's own numbers; errors name the field (the CLI names its flag, a study file its line)."""
    def bad(field: str, msg: str):
        return ConfigError(f"'{field}' {msg}", owner="request", field=field)

    if req.steps < 1:
        raise bad("steps", f"must be at least 1, got {req.steps}")
    if req.eval_every is not None and req.eval_every < 1:
        raise bad("eval_every", f"must be at least 1, got {req.eval_every} (leave it out for one evaluation at "
                                f"the end)")
    every = req.eval_every or req.steps
    if every < 1 or every > req.steps:
        raise bad("eval_every", f"must be in [1, {req.steps}], got {every}")
    if req.steps % every:
        raise bad("eval_every", f"= {every} does not divide 'steps' = {req.steps}")
    if req.eval_episodes < 1:
        raise bad("eval_episodes", f"must be at least 1, got {req.eval_episodes}")
    if not 0 <= req.seed < 2**32:
        raise bad("seed", f"must be in [0, 2^32), got {req.seed}")
    return every


@dataclass(frozen=True)
class Resolved:
    """A request checked without its data: resolved configs and classes (`check_request`)."""

    eval_every: int
    aug_config: Any
    algo_cls: type
    algo_config: Any
    mix: Any


@dataclass(frozen=True)
class Plan:
    """A request checked with its data, ready to execute (`plan`)."""

    config: dict  # the canonical config; its hash is the run id
    dataset: Any
    resolved: Resolved
    device: str

    @property
    def run_id(self) -> str:
        return run_id(self.config)


def check_request(req: RunRequest) -> Resolved:
    """Everything that can be checked without the data: numbers, names, configs, the augmenter/trainer pair."""
    from algos import TRAINERS
    from algos.base import resolve
    from bench.mixing import MixConfig
    from methods import AUGMENTERS

    every = _check_numbers(req)
    aug_cls = AUGMENTERS.get(req.augmenter)
    algo_cls = TRAINERS.get(req.algo)
    try:
        aug_cfg = aug_cls.resolve_config(req.augmenter_config, where=f"augmenter '{req.augmenter}' config")
    except BenchError as e:
        raise ConfigError(str(e), owner="augmenter") from None
    try:
        algo_cfg = resolve(algo_cls.config_class, algo_cls.presets, req.algo_config,
                           where=f"algo '{req.algo}' config")
    except BenchError as e:
        raise ConfigError(str(e), owner="algo") from None
    try:
        mix = MixConfig.from_dict(req.mix, where="mixing config")
    except BenchError as e:
        raise ConfigError(str(e), owner="mix") from None
    if algo_cls.needs_trajectories and aug_cls.output == "transitions":
        raise NotApplicable(f"not applicable: '{req.algo}' trains on whole trajectories and augmenter "
                            f"'{req.augmenter}' generates transitions (the papers print '-')")
    return Resolved(every, aug_cfg, algo_cls, algo_cfg, mix)


def canonical_config(req: RunRequest, dataset, device: str | None = None, resolved: Resolved | None = None) -> dict:
    """The run's full canonical config; its hash is the run id.  `resolved` is `check_request(req)` when the
    caller has it already (a sweep resolves each augmenter and algo entry once, not once per run)."""
    r = resolved or check_request(req)
    every, aug_cfg, algo_cfg, mix = r.eval_every, r.aug_config, r.algo_config, r.mix
    device = device or provenance.resolve_device(req.device)
    return {
        # 2: batches drawn from the canonical arrays by bench.batches (1: d3rlpy's replay buffer), and augmenter
        # configs carry `sample_seed`; the same config trains on other batches than before, so it gets a new
        # run id.
        "schema": CONFIG_SCHEMA,
        "dataset": {"name": req.dataset, "task": req.task, "content_hash": dataset.meta.content_hash,
                    "transitions": len(dataset)},
        "augmenter": {"name": req.augmenter, "config": aug_cfg.to_dict(), "seed": req.seed},
        "algo": {"name": req.algo, "config": algo_cfg.to_dict()},
        "mix": mix.to_dict(),
        "seed": req.seed,
        "steps": req.steps,
        "eval_every": every,
        "eval_episodes": req.eval_episodes,
        "device": "cuda" if device.startswith("cuda") else "cpu",
    }


def plan(req: RunRequest, dataset=None):
    """Resolve and check everything before any work: names, configs, the pair, the data, the device."""
    from bench import data
    from bench.evaluate import check_evaluable

    resolved = check_request(req)
    if dataset is None:
        data.ensure(req.dataset, say=lambda line: print(line, file=sys.stderr, flush=True))  # made on first use
        dataset = data.load(req.dataset, req.task)
    check_evaluable(dataset.meta, build=True)  # the evaluation environment, before the first gradient step
    device = provenance.resolve_device(req.device)
    return Plan(canonical_config(req, dataset, device, resolved), dataset, resolved, device)


def run_id(config: dict) -> str:
    """The hash of the run's config with the augmenter's and trainer's options that were added later at their
    old values left out (`Config.identity`): adding an option keeps every earlier run's id."""
    return hashlib.sha256(json.dumps(_identity(config), sort_keys=True).encode()).hexdigest()[:16]


def _identity(config: dict) -> dict:
    from algos import TRAINERS
    from bench.config import hashed_config
    from methods import AUGMENTERS

    out = dict(config)
    for part, registry in (("augmenter", AUGMENTERS), ("algo", TRAINERS)):
        entry = out.get(part)
        if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
            out[part] = {**entry, "config": hashed_config(registry, entry.get("name"), entry["config"])}
    return out


def data_recipe(dataset) -> dict | None:
    """How data generated here was made (the generator and its config, from the file's sidecar); None for data
    read as it is (OGBench / Minari files).  Generated point mazes are bitwise the same on one machine, but not
    across CPUs (MuJoCo's floating point: seen here, the same generator config and seed gave another content
    hash on another machine), so a study's archive also matches generated data by recipe (`recipe_key`)."""
    made = dataset.meta.extra.get("generated_by") if isinstance(dataset.meta.extra, dict) else None
    return {"generator": "augbench.pointmaze", "config": made} if made else None


def recipe_key(config: dict, recipe: dict | None) -> str | None:
    """The run's identity with the generated data's content hash replaced by its recipe: the same run on another
    machine.  None for data read as it is (its content is the identity)."""
    if recipe is None:
        return None
    ds = {k: v for k, v in config["dataset"].items() if k != "content_hash"}
    rest = {k: v for k, v in config.items() if k != "run_id"}  # a result's config also names its run id
    return run_id({**rest, "dataset": {**ds, "recipe": recipe}})


def _write_curve(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["step", "score", "success_rate", "return", "wall_s"])
    w.writeheader()
    w.writerows(rows)
    write_bytes(path, buf.getvalue().encode())


def _save_checkpoint(run_dir: Path, trainer, step: int, curve: list, train_seconds: float) -> None:
    """Model file first (named by its step), then the state that points at it, both atomic; older models go.
    A kill at any moment leaves either the previous consistent checkpoint or the new one."""
    import random

    import torch

    model = run_dir / f"checkpoint-{step}.model"
    tmp = run_dir / f".checkpoint-{step}.model.tmp"
    trainer.save_checkpoint(tmp)
    os.replace(tmp, model)
    state = {"step": step, "model": model.name, "curve": curve, "train_seconds": train_seconds,
             "numpy": np.random.get_state(), "torch": torch.get_rng_state(), "python": random.getstate(),
             "sampler": trainer.sampler.state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    with atomic_open(run_dir / "checkpoint.pt", "wb") as f:
        torch.save(state, f)
    for old in run_dir.glob("checkpoint-*.model"):
        if old.name != model.name:
            old.unlink(missing_ok=True)


class CheckpointUnreadable(Exception):
    pass


def _load_checkpoint(run_dir: Path, trainer):
    """(step, curve, train seconds) of the checkpoint, None when there is none; CheckpointUnreadable when there
    is one that cannot be read (the trainer may then be half-loaded: the caller builds a fresh one)."""
    import random

    import torch

    path = run_dir / "checkpoint.pt"
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=False)
        trainer.sampler.set_state(state["sampler"])
        trainer.load_checkpoint(run_dir / state["model"], state["step"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        if state.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        return state["step"], state["curve"], state["train_seconds"]
    except Exception as e:
        raise CheckpointUnreadable(f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}")


def _drop_checkpoints(run_dir: Path) -> None:
    for p in [run_dir / "checkpoint.pt", *run_dir.glob("checkpoint-*.model")]:
        p.unlink(missing_ok=True)


@dataclass
class _Progress:
    """Where a run stands: the trainer, and what its checkpoint (if any) gave back."""

    trainer: Any
    start: int = 0
    curve: list = field(default_factory=list)
    train_seconds: float = 0.0
    warnings: list = field(default_factory=list)


def _start_or_resume(p: Plan, req: RunRequest, generated, run_dir: Path, force: bool) -> _Progress:
    """A built trainer, resumed from the run's checkpoint when there is a readable one."""
    r = p.resolved

    def new_trainer():
        t = r.algo_cls(r.algo_config, seed=req.seed, device=p.device)
        t.build(p.dataset, generated, r.mix)
        return t

    state = _Progress(new_trainer())
    if force:
        _drop_checkpoints(run_dir)
        return state
    try:
        resumed = _load_checkpoint(run_dir, state.trainer)
    except CheckpointUnreadable as e:
        state.warnings.append(f"the checkpoint in {run_dir} could not be read ({e}); the run restarted from step 0")
        print(f"warning: {state.warnings[-1]}", file=sys.stderr, flush=True)
        _drop_checkpoints(run_dir)
        state.trainer, resumed = new_trainer(), None  # nothing half-loaded
    if resumed:
        state.start, state.curve, state.train_seconds = resumed
    return state


def _train_and_evaluate(p: Plan, req: RunRequest, state: _Progress, run_dir: Path, t_start: float,
                        progress) -> None:
    """Train in chunks of `eval_every` steps, evaluating, writing the curve and checkpointing after each."""
    from bench.evaluate import evaluate

    every, trainer = p.config["eval_every"], state.trainer
    for step in range(state.start + every, req.steps + 1, every):
        t0 = time.perf_counter()
        trainer.train(every)
        state.train_seconds += time.perf_counter() - t0
        ev = evaluate(trainer, p.dataset.meta, req.eval_episodes, seed=req.seed)
        state.curve.append({"step": step, "score": round(ev["score"], 6),
                            "success_rate": round(ev["success_rate"], 6), "return": round(ev["return"], 6),
                            "wall_s": round(time.perf_counter() - t_start, 3)})
        _write_curve(run_dir / "curve.csv", state.curve)
        if step < req.steps:
            _save_checkpoint(run_dir, trainer, step, state.curve, state.train_seconds)
        if progress:
            progress(step, req.steps, state.curve[-1])
    if trainer.grad_steps != req.steps:
        raise BenchError(f"{req.algo}: {trainer.grad_steps} gradient steps ran, {req.steps} were asked for")


def _result(p: Plan, req: RunRequest, state: _Progress, augmentation: dict, t_start: float) -> dict:
    trainer, curve = state.trainer, state.curve
    last3 = [r["score"] for r in curve[-3:]]
    return {
        "run_id": p.run_id,
        "status": "done",
        "dataset": req.dataset, "task": req.task, "augmenter": req.augmenter, "algo": req.algo,
        "preset": p.resolved.algo_config.preset, "seed": req.seed,
        "score": curve[-1]["score"],
        "score_last3_mean": sum(last3) / len(last3),
        "metric": "success rate (%)" if p.dataset.meta.source == "ogbench" else "normalized score (x100)",
        "grad_steps": trainer.grad_steps,
        "resumed_from_step": state.start,
        "grad_steps_per_s": trainer.grad_steps / state.train_seconds if state.train_seconds > 0 else None,
        "wall_s": time.perf_counter() - t_start,
        "augmentation": augmentation,
        "device": p.device, "device_name": provenance.device_name(p.device),
        "versions": provenance.package_versions(),
        "git": provenance.git_state(),
        "warnings": state.warnings + trainer.warnings,
        "config": p.config,
        "data_recipe": data_recipe(p.dataset),
    }


DVR_FIELDS = ("source", "tolerance", "dvr", "violations", "checked", "invalid_states", "unrecoverable",
              "error_quantiles", "gta_dynamic_mse", "reward_mae", "action_out_of_bounds")


def _dvr_summary(dataset, generated, aug_key: str) -> dict | None:
    """The generated data's DVR against the true simulator (bench.dvr; computed once per augmentation and kept
    beside it), or why there is none.  The model figure, for data without a simulator, comes from `bench dvr
    --model`."""
    from bench import dvr

    if generated is None:
        return None  # nothing generated (`none`)
    if not dvr.simulator_for_available(dataset):
        return {"source": "unavailable", "reason": "no simulator state can be rebuilt from the observations; "
                                                   "`bench dvr --model` gives the model figure"}
    fig = dvr.measure(dataset, generated, aug_key)["simulator"]
    out = {k: fig.get(k) for k in DVR_FIELDS}
    if fig.get("segments"):
        out["segments_violating_share"] = fig["segments"]["violating_share"]
    return out


def execute(req: RunRequest, force: bool = False, progress: Callable[[int, int, dict | None], None] | None = None,
            root: Path | None = None, planned: Plan | None = None,
            aug_progress: Callable[[int, int], None] | None = None) -> tuple[Path, dict]:
    """Do the run (or find it done); returns (run directory, result).  `planned` is `plan(req)` if the caller
    already made it; `aug_progress(done, total)` hears the augmenter's fit (default: log lines on stderr)."""
    p = planned or plan(req)
    run_dir = (root or results_root()) / "runs" / p.run_id
    result_path = run_dir / "result.json"
    if result_path.exists() and not force:
        return run_dir, json.loads(result_path.read_text())
    ensure_dir(run_dir)
    with _claim(run_dir):
        if result_path.exists() and not force:  # finished by another process while we waited to look
            return run_dir, json.loads(result_path.read_text())
        return _execute_claimed(p, req, run_dir, force, progress, aug_progress)


def is_claimed(run_dir: Path) -> bool:
    """Whether a live process holds the run's claim (it is training now), without taking it."""
    import fcntl

    claim = Path(run_dir) / ".claim"
    if not claim.exists():
        return False
    try:
        with open(claim) as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _claim(run_dir: Path):
    """An exclusive claim on the run directory for as long as the run trains: an flock, which the kernel
    releases when its holder dies, so a killed run never leaves it stuck.  A second claimant (another sweep of
    the same file, `--force` while it runs) gets RunningElsewhere and writes nothing."""
    import fcntl

    with open(run_dir / ".claim", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunningElsewhere(f"run {run_dir.name} is running elsewhere (another process holds "
                                   f"{run_dir / '.claim'})") from None
        yield


def _execute_claimed(p: Plan, req: RunRequest, run_dir: Path, force: bool, progress, aug_progress):
    from bench.augment import augment

    result_path = run_dir / "result.json"
    if force:
        result_path.unlink(missing_ok=True)
    (run_dir / "error.json").unlink(missing_ok=True)  # an earlier failure of this run: it is being run again
    write_json(run_dir / "config.json", {"run_id": p.run_id, **p.config})

    t_start = time.perf_counter()
    generated, aug_key, from_cache = augment(p.dataset, req.augmenter, p.resolved.aug_config, req.seed, p.device,
                                             progress=aug_progress)
    dvr = _dvr_summary(p.dataset, generated, aug_key)
    state = _start_or_resume(p, req, generated, run_dir, force)
    _train_and_evaluate(p, req, state, run_dir, t_start, progress)
    trainer = state.trainer
    tmp = run_dir / f".{trainer.policy_filename}.tmp"
    trainer.save(tmp)
    os.replace(tmp, run_dir / trainer.policy_filename)
    _drop_checkpoints(run_dir)
    result = _result(p, req, state, {"cache_key": aug_key, "from_cache": from_cache,
                                     "generated": 0 if generated is None else len(generated),
                                     "kind": None if generated is None else generated.meta.kind,
                                     # the augmenter's own record of its making (acceptance, rejections, ...)
                                     "stats": None if generated is None else
                                     generated.meta.extra.get(req.augmenter),
                                     "dvr": dvr}, t_start)
    write_json(result_path, result)
    return run_dir, result
