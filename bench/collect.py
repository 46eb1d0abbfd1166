"""Consolidate a study's finished runs into one parquet table (one row per run, the config flattened into
columns; pairs that do not apply, such as DT x a transitions augmenter, as rows with status 'not applicable';
failed, incomplete and pending runs as rows with that status, so that a report can say what is missing)
and a companion table of curves (one row per evaluation), both readable by pandas and DuckDB."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from bench.io import ensure_dir
from bench.run import results_root


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def collect(study_name: str, runs, archive: Path | None = None) -> tuple[Path, Path, int]:
    """`archive`: the study's archive folder; a run this machine lacks is read from there (bench.sweep.archive)."""
    from bench.sweep import merged_states, run_folder, run_states
    from bench.sweep.archive import archived_recipes

    root = results_root()
    states = merged_states(run_states(root), archive, runs)
    recipes = archived_recipes(archive) if archive is not None else {}
    rows, curves = [], []
    for r in runs:
        q = r.request
        if not r.applicable:  # recorded, so that tables print '-' for the pair
            rows.append({"status": "not applicable", "label": r.label, "dataset": q.dataset, "task": q.task,
                         "augmenter": q.augmenter, "algo": q.algo, "seed": q.seed,
                         "augmenter_label": r.augmenter_label, "algo_label": r.algo_label})
            continue
        run_dir = run_folder(r.run_id, root, archive, r.recipe_key, recipes) if r.run_id else root / "runs" / "-"
        result_path = run_dir / "result.json"
        if not r.run_id or not result_path.exists():  # recorded too: a report must say what is missing
            state = "pending" if not r.run_id else states.get(r.run_id, "pending")
            rows.append({"status": state, "label": r.label, "run_id": r.run_id, "dataset": r.request.dataset,
                         "task": r.request.task, "augmenter": r.request.augmenter, "algo": r.request.algo,
                         "seed": r.request.seed, "augmenter_label": r.augmenter_label,
                         "algo_label": r.algo_label})
            continue
        try:
            result = json.loads(result_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            from bench.errors import BenchError

            raise BenchError(f"{result_path}: not a readable result ({type(e).__name__}); restore it from git or "
                             f"delete its run folder to train the run again") from None
        flat = pd.json_normalize({k: v for k, v in result.items() if k != "config"}, sep=".").iloc[0].to_dict()
        flat.update({f"config.{k}": v for k, v in
                     pd.json_normalize(result["config"], sep=".").iloc[0].to_dict().items()})
        flat.update({"label": r.label, "augmenter_label": r.augmenter_label, "algo_label": r.algo_label})
        if flat.get("run_id") != r.run_id:  # archived from another machine, matched by recipe (bench.sweep.archive)
            flat.update({"archived_run_id": flat.get("run_id"), "run_id": r.run_id})
        rows.append({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()})
        curve = pd.read_csv(run_dir / "curve.csv")
        curve.insert(0, "run_id", r.run_id)
        curves.append(curve)
    ensure_dir(root)
    runs_path = root / f"{study_name}.parquet"
    curves_path = root / f"{study_name}-curves.parquet"
    _write_parquet(pd.DataFrame(rows), runs_path)
    _write_parquet(pd.concat(curves, ignore_index=True) if curves else
                   pd.DataFrame(columns=["run_id", "step", "score", "success_rate", "return", "wall_s"]), curves_path)
    return runs_path, curves_path, sum(1 for row in rows if row.get("status") == "done")
