"""A study expanded into planned runs (each augmenter x algo pair resolved once), and what is done already."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError, ConfigError, DatasetMissing, NotApplicable
from bench.run import Resolved, RunRequest, canonical_config, data_recipe, recipe_key, results_root, run_id
from bench.sweep.schema import AlgoEntry, AugmenterEntry, Study, _line_of, load_study


@dataclass
class PlannedRun:
    request: RunRequest  # dataset, task, augmenter, algo, seed, configs
    augmenter_label: str
    algo_label: str
    run_id: str | None  # None when the dataset is not there yet
    aug_key: str | None
    applicable: bool = True
    recipe_key: str | None = None  # generated data: the run's identity across machines (bench.run.recipe_key)

    @property
    def label(self) -> str:
        """dataset/task/augmenter-label/algo-label/seed, for display and `--only` only (dataset names such as
        Minari ids hold '/' themselves, so it is never split back into fields)."""
        r = self.request
        return f"{r.dataset}/{r.task if r.task is not None else '-'}/{self.augmenter_label}/{self.algo_label}/{r.seed}"


def _request(study: Study, dataset: str, task: int | None, a: AugmenterEntry, g: AlgoEntry, seed: int) -> RunRequest:
    """The one place a study entry becomes a run request."""
    return RunRequest(dataset=dataset, task=task, algo=g.name, augmenter=a.name, seed=seed,
                      steps=study.training.steps, eval_every=study.training.eval_every,
                      eval_episodes=study.evaluation.episodes, augmenter_config=a.config, algo_config=g.config,
                      mix=(a.mix or study.mix).model_dump(), device=study.device)


# A run field -> where a study file sets it.
_STUDY_FIELDS = {"steps": ("training", "steps"), "eval_every": ("training", "eval_every"),
                 "eval_episodes": ("evaluation", "episodes"), "seed": ("seeds",), "device": ("device",)}


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

    try:
        device = resolve_device(study.device)
    except ConfigError as e:
        fail(("device",), str(e))
    # Resolve each augmenter x algo pair once (configs, presets, applicability); runs differ only by data and seed.
    pairs: dict[tuple[int, int], "Resolved | NotApplicable"] = {}
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
            recipe = data_recipe(dataset) if dataset is not None else None
            for ai, a in enumerate(study.augmenters):
                for gi, g in enumerate(study.algos):
                    resolved = pairs[ai, gi]
                    for seed in study.seeds:
                        req = _request(study, d.name, task, a, g, seed)
                        labels = dict(augmenter_label=a.label or a.name, algo_label=g.label or g.name)
                        if isinstance(resolved, BenchError):
                            runs.append(PlannedRun(req, **labels, run_id=None, aug_key=None, applicable=False))
                            continue
                        rid = key = rkey = None
                        if dataset is not None:
                            config = canonical_config(req, dataset, device, resolved)
                            rid, rkey = run_id(config), recipe_key(config, recipe)
                            key = cache_key(dataset, a.name, aug_dicts[ai], seed)
                        runs.append(PlannedRun(req, **labels, run_id=rid, aug_key=key, recipe_key=rkey))
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
    if only is not None and not only.strip():
        raise BenchError("--only: an empty pattern; give a glob such as 'toy-maze/1/noise/*' (or leave --only out "
                         "to run everything)")
    todo = []
    for r in runs:
        if not r.applicable or (only and not fnmatch.fnmatch(r.label, only)):
            continue
        state = states.get(r.run_id or "", "pending")
        if force or state in ("pending", "incomplete") or (state == "failed" and retry_failed):
            todo.append(r)
    return todo


def augmentation_key(r: PlannedRun) -> str | None:
    """The key of the augmentation a run needs: its cache key (dataset content, augmenter config, seed), or
    (dataset, task, augmenter label, seed) while the dataset is not there yet; None for a run that needs none
    (its augmenter declares no output, as `none`, or the run is not applicable)."""
    from methods import AUGMENTERS

    q = r.request
    if not r.applicable or AUGMENTERS.get(q.augmenter).output == "none":
        return None
    return r.aug_key or f"{q.dataset}/{q.task}/{r.augmenter_label}/{q.seed}"


def distinct_augmentations(runs: list[PlannedRun]) -> dict[str, RunRequest]:
    """One request per distinct augmentation among `runs`, keyed by `augmentation_key`."""
    out: dict[str, RunRequest] = {}
    for r in runs:
        key = augmentation_key(r)
        if key is not None:
            out.setdefault(key, r.request)
    return out


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
