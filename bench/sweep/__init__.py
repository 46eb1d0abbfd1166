"""Studies: one YAML file expands datasets x augmenters x algos x seeds into runs, run by an executor, resumable.

The file is validated whole (pydantic plus the registries) before anything runs; an error names the file, the
line and what is allowed.  Run ids are the content hashes of the runs' canonical configs (bench.run), and a run
whose `result.json` exists is done, so deciding what is left is one directory listing and a set look-up.

Stages: every distinct augmentation (dataset content, augmenter config, seed) runs once, before the training
runs that read it (bench.augment caches it, under an flock that dies with its holder); then the training runs.
A training run that raises leaves `error.json` (its last error lines) instead of `result.json`.

Modules by role: `schema` (the study file), `plan` (expansion into planned runs, run state), `local` (the
local and debug executors), `slurm` (the SLURM executor), `archive` (finished runs' small files kept in the
repository, counted as done on every machine), `carry` (interrupted runs, cached augmentations and generated
data packed for another machine).
"""

from bench.sweep.archive import archive_of, archive_runs, archived_states, merged_states, run_folder
from bench.sweep.local import make_augmentations, run_local
from bench.sweep.plan import (PlannedRun, describe, distinct_augmentations, error_lines, expand, run_states,
                              select)
from bench.sweep.schema import Study, load_study
from bench.sweep.slurm import in_flight, make_executor, run_slurm, slurm_available, slurm_parameters

__all__ = ["PlannedRun", "Study", "archive_of", "archive_runs", "archived_states", "merged_states", "run_folder", "describe", "distinct_augmentations", "error_lines", "expand", "in_flight", "load_study",
           "make_augmentations", "make_executor", "run_local", "run_slurm", "run_states", "select", "slurm_available", "slurm_parameters"]
