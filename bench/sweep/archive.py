"""A study's archive: the small files of its finished runs, kept in the repository so a study accumulates across
sessions and machines instead of starting over.

A study file that names `archive: FOLDER` (relative to the study file) gets, for every finished run,
FOLDER/<run_id>/ with `config.json`, `result.json` and `curve.csv` (never the policy or checkpoints).  A run id
is a hash of everything that defines the run (the dataset's content, the augmenter's and trainer's configs, the
seed, the budget), so a run archived on one machine is the same run on another: `bench sweep` counts it as done
and does not train it again, and `bench collect` / `bench report` read it from the archive when this machine's
results folder does not hold it.  Runs are archived as each one finishes, when the sweep ends (also after Ctrl-C
or a failure) and when it starts, each run folder written whole under a temporary name and then renamed into
place, so a launcher killed outright loses none of the runs it finished.

Data generated here (the point mazes) is bitwise the same on one machine but not across CPUs (MuJoCo's floating
point), so its content hash, and with it the run id, differs from machine to machine.  A planned run on
generated data therefore also matches an archived run with the same recipe key (bench.run.recipe_key: the same
config, with the content hash replaced by the generator's config and seed); each result records its data's
content hash, and the report says when a study's runs trained on more than one generation of a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

SMALL_FILES = ("config.json", "result.json", "curve.csv")


def archive_of(study) -> Path | None:
    """The study's archive folder, resolved against the study file's folder; None when it names none."""
    if not study.archive:
        return None
    base = study.source_file.parent if study.source_file else Path.cwd()
    return (base / study.archive).resolve()


def archived_states(folder: Path | None) -> dict[str, str]:
    """run_id -> 'done' for every archived run (a folder with its result)."""
    if folder is None or not folder.is_dir():
        return {}
    return {e.name: "done" for e in os.scandir(folder) if e.is_dir() and os.path.exists(os.path.join(e.path,
                                                                                                     "result.json"))}


def archived_recipes(folder: Path | None) -> dict[str, str]:
    """recipe key -> archived run id, for every archived run on generated data (its result's `data_recipe`);
    where two archived runs share a key, the first by run id."""
    from bench.run import recipe_key

    out: dict[str, str] = {}
    for rid in sorted(archived_states(folder)):
        try:
            result = json.loads((folder / rid / "result.json").read_text())
            key = recipe_key(result["config"], result.get("data_recipe"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a readable result: `bench collect` names it
        if key is not None:
            out.setdefault(key, rid)
    return out


def merged_states(local: dict[str, str], folder: Path | None, runs=()) -> dict[str, str]:
    """This machine's run states with the archived runs counted as done: by run id, and for the planned `runs`
    on generated data also by recipe key (the same run archived from another machine)."""
    states = {**local, **archived_states(folder)}
    pending = [r for r in runs if r.run_id and r.recipe_key and states.get(r.run_id) != "done"]
    if pending:
        recipes = archived_recipes(folder)
        states.update({r.run_id: "done" for r in pending if r.recipe_key in recipes})
    return states


def run_folder(run_id: str, root: Path, folder: Path | None, recipe_key: str | None = None,
               recipes: dict[str, str] | None = None) -> Path:
    """Where a finished run's small files are: this machine's results, else the archive (by run id, else by
    recipe key; `recipes` is `archived_recipes(folder)` when the caller has it)."""
    local = root / "runs" / run_id
    if (local / "result.json").exists() or folder is None:
        return local
    archived = folder / run_id
    if (archived / "result.json").exists():
        return archived
    if recipe_key is not None:
        rid = (archived_recipes(folder) if recipes is None else recipes).get(recipe_key)
        if rid is not None:
            return folder / rid
    return local


def archive_runs(runs, root: Path, folder: Path | None) -> int:
    """Copy every finished run of `runs` that the archive lacks; returns how many were archived."""
    if folder is None:
        return 0
    have = archived_states(folder)
    recipes = None
    n = 0
    for r in runs:
        if not r.run_id or r.run_id in have:
            continue
        if r.recipe_key is not None:  # the same run archived from another machine: keep that one
            recipes = archived_recipes(folder) if recipes is None else recipes
            if r.recipe_key in recipes:
                continue
        src = root / "runs" / r.run_id
        if not (src / "result.json").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{r.run_id}.", dir=folder))
        try:
            for name in SMALL_FILES:
                if (src / name).exists():
                    shutil.copy2(src / name, tmp / name)
            os.replace(tmp, folder / r.run_id)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (folder / r.run_id / "result.json").exists():
                raise
            continue  # another launcher archived it first
        n += 1
    return n
