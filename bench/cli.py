"""The `bench` command line.  Every user error is one line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.errors import BenchError, ConfigError
from bench.io import ensure_dir
from bench.paths import CACHE_ENV, OGBENCH_ENV

app = typer.Typer(
    help="augbench: does a data-augmentation method make offline RL better, and does its data obey the dynamics?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    epilog="Commands: `bench report FILE --out DIR` builds a study's report; `bench sweep FILE` runs a study (resumable); `bench status FILE` shows its state; "
           "`bench collect FILE` writes its results table; `bench carry pack/unpack` carries its unfinished work to another machine; `bench run` trains one trainer on one (augmented) dataset and records the result; "
           "`bench list` lists augmenters, trainers and datasets; `bench data make NAME` generates a point-maze dataset (OGBench's simulator and protocol); "
           "`bench data show NAME` prints a summary and draws the data on the maze; `bench data list` lists "
           "dataset names and which files are present.",
)
data_app = typer.Typer(help="Datasets: generate, inspect and list.", no_args_is_help=True)
app.add_typer(data_app, name="data", help="Datasets: `data make` generates a maze dataset, `data show` summarises "
              "and draws one, `data list` lists the names.")

out = Console()
err = Console(stderr=True)


@app.callback()
def _root(
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=f"augbench cache (default ${CACHE_ENV} or "
                                             "~/.cache/augbench)."),
    ogbench_dir: Optional[Path] = typer.Option(None, "--ogbench-dir", help=f"OGBench files (default ${OGBENCH_ENV}"
                                               " or ~/.ogbench/data)."),
):
    if cache_dir is not None:
        os.environ[CACHE_ENV] = str(cache_dir.expanduser().resolve())
    if ogbench_dir is not None:
        os.environ[OGBENCH_ENV] = str(ogbench_dir.expanduser().resolve())


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)


@data_app.command("make")
def data_make(
    name: str = typer.Argument(..., help="toy-maze, or an OGBench point-maze name such as pointmaze-medium-stitch-v0."),
    maze: Optional[str] = typer.Option(None, help="Override the maze: medium, large or giant."),
    kind: Optional[str] = typer.Option(None, help="Override the dataset kind: navigate or stitch."),
    episodes: Optional[int] = typer.Option(None, help="Override the number of training episodes."),
    episode_steps: Optional[int] = typer.Option(None, "--episode-steps", help="Override the rows per episode."),
    noise: Optional[float] = typer.Option(None, help="Override the action-noise std (OGBench: 0.5)."),
    seed: int = typer.Option(0, help="Seed; the same seed gives the same file, bit for bit."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: one per core for large jobs)."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Write the train file here instead "
                                            "(the val file goes beside it)."),
    force: bool = typer.Option(False, help="Regenerate even if the file exists."),
):
    """Generate a point-maze dataset with OGBench's simulator and protocol."""
    from bench import data
    from bench.data import pointmaze

    cfg = data.resolve_generable(name)
    overrides = {k: v for k, v in dict(maze=maze, kind=kind, episodes=episodes, episode_steps=episode_steps,
                                       noise=noise).items() if v is not None}
    cfg = replace(cfg, seed=seed, **overrides).check()
    if workers is not None and workers < 1:
        raise BenchError(f"--workers: must be at least 1, got {workers}")
    path = (out_path.expanduser() if out_path else data.file_for(name))
    if path.suffix != ".npz" or path.is_dir():  # checked before the generation, not after it
        raise BenchError(f"--out: {path} must be a file name ending in .npz")
    side = pointmaze.read_sidecar(path)
    if path.exists() and pointmaze.val_path(path).exists() and not force and side and side.get("config") == asdict(cfg) \
            and pointmaze.check_set(path) is None:
        out.print(f"[green]up to date[/]: {path} (same config and seed; --force regenerates)")
        return
    ensure_dir(path.parent)  # an unwritable destination fails now, before the progress bar
    rows = (cfg.episodes + cfg.val_episodes) * cfg.episode_steps
    with _progress() as prog:
        task = prog.add_task(f"{name} ({cfg.maze} {cfg.kind}, seed {cfg.seed})", total=rows)
        path, n_train, n_val, seconds = data.make(name, cfg, path=path, workers=workers,
                                                  progress=lambda n: prog.advance(task, n))
    out.print(f"wrote {path} ({n_train:,} rows) and {pointmaze.val_path(path).name} "
              f"({n_val:,} rows) in {seconds:.1f} s: {rows / seconds:,.0f} steps/s")


@data_app.command("show")
def data_show(
    name: str = typer.Argument(..., help="Dataset name (see `bench data list`)."),
    task: Optional[int] = typer.Option(None, help="Singletask task id (OGBench)."),
    png: Optional[Path] = typer.Option(None, "--out", help="Where to write the PNG (default: the cache's figures/)."),
    max_episodes: int = typer.Option(300, help="Episodes drawn at most."),
):
    """Summarise a dataset and draw its trajectories on the maze (PNG)."""
    from bench import data
    from bench.data import show
    from bench.paths import figures_dir

    if max_episodes < 1:
        raise BenchError(f"--max-episodes: must be at least 1, got {max_episodes}")
    ds = data.load(name, task)
    safe = ds.meta.name.replace("/", "_").replace(":", "_")
    png = png.expanduser() if png else figures_dir() / (f"{safe}" + (f"-task{task}" if task else "") + ".png")
    if png.is_dir():  # every check before anything is printed or written
        raise BenchError(f"--out: {png} is a directory; give the PNG's file name")
    ensure_dir(png.parent)
    table = Table(title=f"{ds.meta.name}" + (f" task {task}" if task else ""), show_header=False)
    for k, v in show.summary(ds).items():
        table.add_row(k, str(v))
    out.print(table)
    rng = Table(title="per-dimension ranges", show_header=True)
    for col in ("dimension", "min", "max", "mean", "std"):
        rng.add_column(col, justify="right" if col != "dimension" else "left")
    for dim, lo, hi, mean, std in show.ranges(ds)[:40]:
        rng.add_row(dim, f"{lo:.4g}", f"{hi:.4g}", f"{mean:.4g}", f"{std:.4g}")
    out.print(rng)
    show.draw(ds, png, max_episodes=max_episodes)
    out.print(f"picture: {png}", highlight=False, soft_wrap=True)


@data_app.command("list")
def data_list():
    """List the dataset names augbench knows, and which files are present."""
    from bench import data
    from bench.data import minari_data, ogbench_data

    rows = []
    for name, cfg in data.generable().items():
        p = data.file_for(name)
        rows.append((name, "present" if p.exists() else "absent", f"generable: {cfg.maze} {cfg.kind}, "
                     f"{cfg.episodes} x {cfg.episode_steps} steps ({p})"))
    from bench.paths import ogbench_dir

    for name in ogbench_data.catalogue():
        p = ogbench_dir() / f"{name}.npz"
        if name not in data.generable() and p.exists():
            rows.append((name, "present", f"OGBench file ({p})"))
    rows += [(f"minari:{did}", "present", "Minari dataset") for did in minari_data.local_ids()]
    width = max(len(r[0]) for r in rows)
    for name, present, what in rows:
        out.print(f"{name:<{width}}  {present:<7}  {what}", highlight=False, soft_wrap=True)
    out.print("Any OGBench name works once its file is in the OGBench directory; add --task N for singletask.")


def _json_option(text: Optional[str], option: str) -> dict:
    if not text:
        return {}
    import json

    try:
        value = json.loads(text)
    except ValueError as e:
        raise BenchError(f"{option}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise BenchError(f"{option}: must be a JSON object such as '{{\"key\": 1}}'")
    return value


@app.command("run")
def run_cmd(
    dataset: str = typer.Option(..., help="Dataset name (see `bench list`)."),
    algo: str = typer.Option(..., help="Trainer: iql, td3bc, cql, dt, ..."),
    augmenter: str = typer.Option("none", help="Augmenter: none, noise, ..."),
    task: Optional[int] = typer.Option(None, help="OGBench singletask task id."),
    seed: int = typer.Option(0, help="Seed for the augmenter, the trainer and the evaluation."),
    steps: int = typer.Option(2000, help="Gradient steps."),
    eval_every: Optional[int] = typer.Option(None, help="Evaluate every N steps (default: once, at the end)."),
    eval_episodes: int = typer.Option(10, help="Episodes per evaluation (OGBench's protocol uses 50)."),
    aug_config: Optional[str] = typer.Option(None, help="Augmenter config overrides, JSON."),
    algo_config: Optional[str] = typer.Option(None, help="Trainer config overrides, JSON (e.g. '{\"preset\": \"maze\"}')."),
    mix: str = typer.Option("ratio", help="How generated data is mixed in: ratio, synthetic or union."),
    ratio: float = typer.Option(0.5, help="Share of generated samples per batch (mix=ratio)."),
    device: str = typer.Option("auto", help="auto (cuda:0 when there is one), cpu:0 or cuda:N."),
    force: bool = typer.Option(False, help="Run again even if the result exists."),
    results_dir: Optional[Path] = typer.Option(None, help="Results root (default $AUGBENCH_RESULTS or ./results)."),
):
    """Train one trainer on one (augmented) dataset, evaluate it, and record the result."""
    from bench.run import RunRequest, execute, plan

    req = RunRequest(dataset=dataset, algo=algo, augmenter=augmenter, task=task, seed=seed, steps=steps,
                     eval_every=eval_every, eval_episodes=eval_episodes,
                     augmenter_config=_json_option(aug_config, "--aug-config"),
                     algo_config=_json_option(algo_config, "--algo-config"),
                     mix={"mode": mix, "ratio": ratio}, device=device)
    planned = plan(req)  # every check before the progress bar and before anything is written
    from bench.run import results_root

    ensure_dir((results_dir or results_root()) / "runs")  # an unwritable results root fails now
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
                  console=err) as prog:
        bar = prog.add_task(f"{algo} on {dataset}" + (f" task {task}" if task else "") + f" ({augmenter})",
                            total=steps, last="")

        fit_bar = []

        def fit_report(done, total):  # the augmenter's fit, when it has one to run
            if not fit_bar:
                fit_bar.append(prog.add_task(f"fit {augmenter}", total=total, last=""))
            prog.update(fit_bar[0], completed=done, total=total)

        def report(step, total, row):
            prog.update(bar, completed=step, last=f"score {row['score']:.1f}" if row else "")

        run_dir, result = execute(req, force=force, progress=report, root=results_dir, planned=planned,
                                  aug_progress=fit_report)
    out.print(f"{result['metric']}: {result['score']:.1f} at step {result['grad_steps']} "
              f"(mean of the last three evaluations {result['score_last3_mean']:.1f}); "
              f"{(result['grad_steps_per_s'] or 0):.0f} gradient steps/s on {result['device']}", soft_wrap=True)
    for line in result.get("warnings", []):
        out.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    out.print(f"run: {run_dir}", highlight=False, soft_wrap=True)


@app.command("dvr")
def dvr_cmd(
    dataset: str = typer.Argument(..., help="Dataset name (see `bench list`)."),
    augmenter: str = typer.Option(..., help="Augmenter whose data is checked (none: the original data itself)."),
    task: Optional[int] = typer.Option(None, help="OGBench singletask task id."),
    seed: int = typer.Option(0, help="The augmentation's seed (as in `bench run`)."),
    aug_config: Optional[str] = typer.Option(None, help="Augmenter config overrides, JSON."),
    tolerance: float = typer.Option(0.1, help="Violation threshold, in stds of the original data's state change."),
    model: bool = typer.Option(False, "--model", help="Also the model DVR (a dynamics ensemble fitted on the "
                               "original data); where no simulator can be rebuilt it is the only figure."),
    model_config: Optional[str] = typer.Option(None, help="Dynamics-ensemble config overrides, JSON (e.g. "
                                               "'{\"max_epochs\": 5}')."),
    device: str = typer.Option("auto", help="auto (cuda:0 when there is one), cpu:0 or cuda:N."),
    plot: Optional[Path] = typer.Option(None, help="Also write the per-position (or per-tolerance) plot here."),
):
    """Dynamics Violation Rate: every generated transition checked against the true simulator (see README)."""
    import math

    from bench import data, dvr
    from bench.augment import augment, cache_key
    from bench.provenance import resolve_device
    from methods import AUGMENTERS

    if not (math.isfinite(tolerance) and tolerance > 0):
        raise BenchError(f"--tolerance: must be a positive number, got {tolerance}")
    if augmenter not in AUGMENTERS.names():
        raise BenchError(f"--augmenter: unknown augmenter '{augmenter}' (allowed: {', '.join(AUGMENTERS.names())})")
    if not 0 <= seed < 2 ** 32:
        raise BenchError(f"--seed: must be in [0, 2^32), got {seed}")
    if plot is not None and (plot.is_dir() or plot.suffix != ".png"):
        raise BenchError(f"--plot: {plot} must be a file name ending in .png")
    cls = AUGMENTERS.get(augmenter)
    cfg = cls.resolve_config(_json_option(aug_config, "--aug-config"), where="--aug-config")
    mcfg = _json_option(model_config, "--model-config")
    from blocks.dynamics import EnsembleConfig

    try:
        EnsembleConfig(**mcfg).validate()
    except (TypeError, ValueError) as e:
        raise BenchError(f"--model-config: {e}") from None
    dev = resolve_device(device)
    data.ensure(dataset, say=lambda line: err.print(line, highlight=False, soft_wrap=True))
    ds = data.load(dataset, task)
    generated, key, _ = augment(ds, augmenter, cfg, seed, dev)
    what = f"{augmenter} data" if generated is not None else "the original data"
    if generated is None:
        generated, key = ds, cache_key(ds, augmenter, cfg.to_dict(), seed)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err) as prog:
        bar = prog.add_task(f"DVR of {what}", total=len(generated))
        figs = dvr.measure(ds, generated, key, tolerance, model=model, model_config=mcfg, device=dev,
                           progress=lambda done, total: prog.update(bar, completed=done, total=total))
    out.print(f"DVR of {what} on {ds.meta.name} (tolerance {tolerance:g} std of the state change; definition in "
              f"the README):", highlight=False, soft_wrap=True)

    def num(v, fmt="{:.3g}"):
        return "-" if v is None or v != v else fmt.format(v)

    for source, fig in figs.items():
        q = fig["error_quantiles"]
        seg = fig.get("segments")
        label = "simulator" if source == "simulator" else f"model (ensemble, threshold {fig['model_threshold']:.3g})"
        out.print(f"  {label}: DVR {num(fig['dvr'], '{:.2%}')} of {fig['checked']:,} rows "
                  f"({fig['invalid_states']:,} invalid states); error q50 {num(q['50'])} q90 {num(q['90'])} "
                  f"q99 {num(q['99'])}; GTA dynamic MSE {num(fig.get('gta_dynamic_mse'))}; reward MAE "
                  f"{num(fig.get('reward_mae'))}; actions out of bounds {num(fig.get('action_out_of_bounds'), '{:.1%}')}"
                  + (f"; segments with a violation {seg['violating_share']:.1%} of {seg['count']:,}" if seg else ""),
                  highlight=False, soft_wrap=True)
    try:
        lab = dvr.label_check(ds, generated)  # OGBench singletask mazes only
    except BenchError:
        lab = None
    if lab is not None:
        out.print(f"  goal labels (not part of the DVR): reward wrong on {lab['reward_label_errors']:.2%} of rows, "
                  f"terminal on {lab['terminal_label_errors']:.2%}; labelled goal {lab['labelled_goal']:.2%}, at the "
                  f"goal {lab['at_goal']:.2%}; precision {num(lab['goal_label_precision'], '{:.1%}')}, recall "
                  f"{num(lab['goal_label_recall'], '{:.1%}')}", highlight=False, soft_wrap=True)
    if "simulator" not in figs:
        out.print(f"{ds.meta.name}: no simulator state can be rebuilt from its observations; the model figure "
                  f"only", highlight=False, soft_wrap=True)
    for source, fig in figs.items():
        if fig.get("unrecoverable"):
            out.print(f"{fig['unrecoverable']:,} rows left out: their state cannot be rebuilt from the observation "
                      f"(velocities at the observation's clip bound)", highlight=False, soft_wrap=True)
        png = dvr.dvr_path(key, tolerance, source).with_suffix(".png")
        dvr.plot_positions(fig, png, f"{what} on {ds.meta.name} ({source})")
        if plot is not None:
            dvr.plot_positions(fig, plot if len(figs) == 1 else plot.with_name(f"{plot.stem}-{source}.png"),
                               f"{what} on {ds.meta.name} ({source})")
        out.print(f"{source}: {dvr.dvr_path(key, tolerance, source)} and {png.name}", highlight=False,
                  soft_wrap=True)


@app.command("list")
def list_cmd():
    """List augmenters, trainers and datasets, one line each."""
    from algos import TRAINERS
    from bench import data
    from methods import AUGMENTERS

    def first_line(obj) -> str:
        doc = (obj.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""

    for name in AUGMENTERS.names():
        cls = AUGMENTERS.get(name)
        out.print(f"augmenter  {name:<12} {cls.output:<12} {first_line(__import__(cls.__module__, fromlist=['_']))}",
                  highlight=False, soft_wrap=True)
    for name in TRAINERS.names():
        cls = TRAINERS.get(name)
        presets = list(cls.presets)
        shown = "/".join(presets) if len(presets) <= 4 else "/".join(presets[:2]) + f" +{len(presets) - 2} more"
        out.print(f"trainer    {name:<12} {shown:<24} "
                  f"{first_line(__import__(cls.__module__, fromlist=['_']))}", highlight=False, soft_wrap=True)
    for name in data.generable():
        out.print(f"dataset    {name:<30} {'present' if data.file_for(name).exists() else 'absent (bench data make)'}",
                  highlight=False, soft_wrap=True)
    from bench.data import minari_data

    for did in minari_data.local_ids():
        out.print(f"dataset    minari:{did}", highlight=False, soft_wrap=True)


def _ensure_datasets(runs) -> None:
    """Generate the generable datasets a sweep needs and does not have yet (toy-maze, OGBench point mazes)."""
    from bench import data

    for name in sorted({r.request.dataset for r in runs}):
        data.ensure(name, say=lambda line: err.print(line, highlight=False, soft_wrap=True))


@app.command("sweep")
def sweep_cmd(
    file: Path = typer.Argument(..., help="Study file (sweeps/NAME.yaml)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the expanded grid and what is done; run nothing."),
    executor: Optional[str] = typer.Option(None, help="Override the file's executor: local, debug or slurm."),
    workers: Optional[int] = typer.Option(None, help="Override the local executor's parallel workers."),
    force: bool = typer.Option(False, help="Run every run again, finished or not."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also run the runs that failed before."),
    only: Optional[str] = typer.Option(None, help="Only runs whose label matches this glob "
                                       "(dataset/task/augmenter/algo/seed)."),
    augment_only: bool = typer.Option(False, "--augment-only", help="Only make (fit, sample, cache) the "
                                      "augmentations the selected runs need; train nothing."),
):
    """Run a study: datasets x augmenters x algos x seeds, resumable."""
    from bench import sweep

    study, runs = sweep.expand(file)
    kind = executor or study.executor.kind
    if kind not in ("local", "debug", "slurm"):
        raise BenchError(f"--executor: '{kind}' is not one of local, debug, slurm")
    n_workers = workers or study.executor.workers
    if n_workers < 1:
        raise BenchError(f"--workers: must be at least 1, got {n_workers}")
    from bench.run import results_root

    archive = sweep.archive_of(study)
    if not dry_run:  # runs finished here before (an older launcher, a crash) join the archive first
        sweep.archive_runs(runs, results_root(), archive)
    states = sweep.merged_states(sweep.run_states(), archive, runs)
    todo = sweep.select(runs, states, force, retry_failed, only)
    counts = sweep.describe(runs, states)
    augs = len(sweep.distinct_augmentations(todo))
    table = Table(title=f"{study.name}: {counts['runs']} runs ({counts['not applicable']} not applicable), "
                        f"{len(todo)} to run, {augs} augmentations")
    for col in ("dataset", "task", "augmenter", "algo", "seed", "state"):
        table.add_column(col)
    for r in runs:
        state = "n/a" if not r.applicable else states.get(r.run_id or "", "pending")
        if r in todo:
            state += " -> run"
        q = r.request
        table.add_row(q.dataset, "-" if q.task is None else str(q.task), r.augmenter_label, r.algo_label,
                      str(q.seed), state)
    if dry_run:
        out.print(table)
        out.print(" ".join(f"{k}: {v}" for k, v in counts.items()))
        no_data = sorted({r.request.dataset for r in runs if r.applicable and r.run_id is None})
        archived = len(sweep.archived_states(archive))
        if no_data and archived:  # run ids hash the data's content: archived runs are matched once it is here
            out.print(f"note: {', '.join(no_data)} is not on this machine, so its runs are planned without run ids "
                      f"and none of the {archived} runs archived in {archive} is matched to them yet; `bench sweep` "
                      f"(or `bench data make`) makes the data first, and then counts them as done",
                      highlight=False, soft_wrap=True)
        return
    _ensure_datasets(todo)
    if any(r.run_id is None for r in todo):
        study, runs = sweep.expand(file)
        todo = sweep.select(runs, sweep.merged_states(sweep.run_states(), archive, runs), force, retry_failed, only)
    if augment_only:
        if kind == "slurm":
            raise BenchError("--augment-only runs on this machine: use --executor local or debug")
        try:
            res = sweep.make_augmentations(todo, n_workers, in_process=kind == "debug")
        except KeyboardInterrupt:
            made, total = _augmentations_made(todo)
            _say(f"interrupted: {made} of {total} augmentations made; the fits under way were stopped (each "
                 f"resumes from its last fit checkpoint); `bench sweep {file} --augment-only` goes on")
            raise typer.Exit(130) from None
        out.print(f"{study.name}: {res['augmented']} of {res['augmentations']} augmentations made or found in the "
                  f"cache; no run trained", highlight=False, soft_wrap=True)
        for key, msg in res["failures"]:
            out.print(f"  failed augmentation {key}: {msg}", highlight=False, soft_wrap=True)
        if res["failures"]:
            raise typer.Exit(1)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                  TextColumn("{task.fields[state]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err) as prog:
        bar = prog.add_task(study.name, total=len(todo), state="")

        archived_at, added = [0], [0]

        def report(c, running):
            prog.update(bar, completed=c["done"] + c["failed"],
                        state=f"done {c['done']} running {running} failed {c['failed']}")
            if archive is not None and c["done"] > archived_at[0]:  # each run as it finishes: a launcher killed
                archived_at[0] = c["done"]  # later (kill -9, a lost session) loses none of the finished ones
                added[0] += sweep.archive_runs(runs, results_root(), archive)

        try:
            if kind == "slurm":
                res = sweep.run_slurm(study, todo, force, progress=report)
            else:
                res = sweep.run_local(todo, n_workers, force, progress=report, in_process=kind == "debug")
        except KeyboardInterrupt:
            prog.stop()
            sweep.archive_runs(runs, results_root(), archive)
            _say_what_is_left(study, todo, file, kind)
            if kind == "local":  # the workers are killed; leave now, not after the interpreter's exit hooks join
                sys.stdout.flush()  # the process pool's threads (every result file is written atomically)
                sys.stderr.flush()
                os._exit(130)
            raise typer.Exit(130) from None
    archived = added[0] + sweep.archive_runs(runs, results_root(), archive)
    elsewhere = f", {res['elsewhere']} running elsewhere (left to that process)" if res.get("elsewhere") else ""
    if res.get("reattached"):
        elsewhere += f" ({res['reattached']} of them already queued by an earlier launcher, waited on, not resubmitted)"
    out.print(f"{study.name}: {res['done']} runs done, {res['failed']} failed{elsewhere}, "
              f"{res['augmentations']} augmentations", highlight=False, soft_wrap=True)
    for label, msg in res["failures"]:
        out.print(f"  failed {label}: {msg}", highlight=False, soft_wrap=True)
    if archive is not None:
        out.print(f"archive: {archived} runs added to {archive}", highlight=False, soft_wrap=True)
    out.print(f"results: {results_root() / 'runs'} (bench status {file}; bench collect {file})", soft_wrap=True)
    if res["failed"]:
        raise typer.Exit(1)


def _say_what_is_left(study, todo, file: Path, kind: str) -> None:
    """Ctrl-C: what this sweep finished, what is left, and how to go on."""
    from bench import sweep

    states = sweep.merged_states(sweep.run_states(), sweep.archive_of(study), todo)
    done = sum(states.get(r.run_id or "") == "done" for r in todo)
    started = sum(states.get(r.run_id or "") == "incomplete" for r in todo)
    left = len(todo) - done
    where = ("its SLURM jobs already submitted go on running on the cluster, and the next launch waits on them"
             if kind == "slurm" else "the workers were stopped")
    _say(f"interrupted: {done} of {len(todo)} runs done, {left} left ({started} of them started: they resume "
         f"from their last checkpoint); {where}; `bench sweep {file}` goes on")


def _augmentations_made(runs) -> tuple[int, int]:
    """How many of the distinct augmentations `runs` need are in the cache, and how many there are."""
    from bench import sweep
    from bench.augment import cache_path

    keys = set(sweep.distinct_augmentations(runs))
    return sum(cache_path(k).exists() for k in keys), len(keys)


def _say(line: str) -> None:
    """What an interrupted command says instead of the bare "interrupted" (main)."""
    err.print(line, highlight=False, soft_wrap=True)
    _INTERRUPT["said"] = True


carry_app = typer.Typer(help="Carry a study's unfinished work (checkpoints, cached augmentations, generated "
                        "data) to another machine.", no_args_is_help=True)
app.add_typer(carry_app, name="carry", help="`carry pack FILE OUT.tar` packs a study's interrupted runs, their "
              "cached augmentations and generated data; `carry unpack OUT.tar` restores them on another machine.")


@carry_app.command("pack")
def carry_pack_cmd(
    file: Path = typer.Argument(..., help="Study file."),
    out_path: Path = typer.Argument(..., help="Archive to write (.tar, or .tar.gz to compress)."),
    only: Optional[str] = typer.Option(None, help="Only runs whose label matches this glob."),
):
    """Pack the study's interrupted runs, their cached augmentations and the generated data they read."""
    from bench.sweep import carry

    m = carry.pack(file, out_path, only)
    size = sum(e["bytes"] for e in m["files"])
    out.print(f"{out_path}: {len(m['runs'])} interrupted runs, {len(m['files'])} files ({size / 1e6:.1f} MB)",
              highlight=False, soft_wrap=True)
    for r in m["runs"]:
        out.print(f"  {r['label']} ({r['run_id']}) at step {r['step']}", highlight=False, soft_wrap=True)
    out.print(f"on the other machine: `bench carry unpack {out_path}`, then `bench sweep {file}`", highlight=False,
              soft_wrap=True)


@carry_app.command("unpack")
def carry_unpack_cmd(archive: Path = typer.Argument(..., help="Archive `bench carry pack` wrote.")):
    """Restore a carry archive (checked whole first; nothing is overwritten)."""
    from bench.sweep import carry

    res = carry.unpack(archive)
    m = res["manifest"]
    out.print(f"{archive}: {res['written']} files restored, {res['same']} already here; {len(m.get('runs', []))} "
              f"interrupted runs of {m.get('study')}; `bench sweep {m.get('study_file')}` resumes them",
              highlight=False, soft_wrap=True)


@app.command("status")
def status_cmd(file: Path = typer.Argument(..., help="Study file.")):
    """Show done / failed / incomplete / pending runs of a study, with the failures' last error lines."""
    from bench import sweep

    study, runs = sweep.expand(file)
    states = sweep.merged_states(sweep.run_states(), sweep.archive_of(study), runs)
    counts = sweep.describe(runs, states)
    flying = sweep.in_flight(study.name)["train"]  # SLURM jobs of this study the scheduler still holds
    jobs = {}
    for r in runs:
        if r.run_id in flying and states.get(r.run_id, "pending") in ("pending", "incomplete"):
            jid, state = flying[r.run_id]
            kind = "queued" if state == "PENDING" else "running"
            counts[states.get(r.run_id, "pending")] -= 1
            counts[kind] = counts.get(kind, 0) + 1
            jobs[r.label] = (kind, jid, state)
    from bench.run import is_claimed, results_root

    for r in runs:  # a local run in progress holds its claim: running now, not interrupted
        if r.run_id and r.label not in jobs and states.get(r.run_id) == "incomplete" and \
                is_claimed(results_root() / "runs" / r.run_id):
            counts["incomplete"] -= 1
            counts["running"] = counts.get("running", 0) + 1
    done_augs, n_augs = _augmentations_made(runs)
    out.print(f"{study.name}: augmentation {done_augs}/{n_augs} done; training " +
              ", ".join(f"{k} {v}" for k, v in counts.items()) + " (incomplete = interrupted, resumable from its "
              "checkpoint)", highlight=False, soft_wrap=True)
    for label, (kind, jid, state) in jobs.items():
        out.print(f"  {kind} {label} (SLURM job {jid}, {state})", highlight=False, soft_wrap=True)
    for r in runs:
        if r.run_id and states.get(r.run_id) == "failed":
            out.print(f"  failed {r.label} ({r.run_id}):", highlight=False, soft_wrap=True)
            for line in sweep.error_lines(r.run_id):
                out.print(f"    {line}", highlight=False, soft_wrap=True)


@app.command("collect")
def collect_cmd(file: Path = typer.Argument(..., help="Study file.")):
    """Consolidate a study's finished runs into results/<study>.parquet (+ <study>-curves.parquet)."""
    from bench import collect, sweep

    study, runs = sweep.expand(file)
    runs_path, curves_path, n = collect.collect(study.name, runs, sweep.archive_of(study))
    out.print(f"{n} finished runs -> {runs_path} and {curves_path}", highlight=False, soft_wrap=True)


@app.command("report")
def report_cmd(
    source: Path = typer.Argument(..., help="A study file (collected first) or a collected results .parquet."),
    out_dir: Path = typer.Option(..., "--out", help="Report folder, e.g. reports/NAME/."),
    show: bool = typer.Option(True, "--show/--no-show", help="Print the main table and the DVR table here."),
):
    """Tables (markdown, LaTeX), statistics, published vs measured and plots for a study's results."""
    from bench.report.build import build_report, load

    frame, curves, name = load(source)
    index = build_report(frame, curves, out_dir, name)
    if show:
        _show_tables(out_dir)
    out.print(f"report: {index}", highlight=False, soft_wrap=True)


def _show_tables(out_dir: Path) -> None:
    """The report's main table and its DVR table, in the terminal (as the report has them)."""
    import pandas as pd

    main = out_dir / "table.md"
    if main.exists():
        out.print(main.read_text().strip(), highlight=False, soft_wrap=True, markup=False)
    dvr = out_dir / "dvr.csv"
    if dvr.exists():
        frame = pd.read_csv(dvr)
        table = Table(title="Dynamics Violation Rate (true simulator)", title_justify="left")
        cols = [c for c in ("dataset", "augmenter", "DVR %", "95% CI", "aug. seeds", "rows checked") if c in frame]
        for c in cols:
            table.add_column(c, justify="right" if c not in ("dataset", "augmenter") else "left")
        for _, row in frame[cols].iterrows():
            table.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row])
        out.print(table)


# typer turns a KeyboardInterrupt inside a command into a silent exit code 130; the handler below notes the
# signal, so that main says "interrupted" unless the command said more (_say).
_INTERRUPT = {"signal": False, "said": False}


def _interrupted(signum, frame) -> None:
    _INTERRUPT["signal"] = True
    raise KeyboardInterrupt


def main() -> None:
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack, to stderr
    # SIGINT (Ctrl-C) and SIGTERM (`kill`, a scheduler's stop) both end a command the same clean way: a sweep stops
    # its workers and says what is left.  SIGINT's handler is set even where it arrived ignored (a shell starts
    # `&` jobs with SIGINT ignored, and Python would keep ignoring it).
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        rv = app(standalone_mode=False)
    except BenchError as e:
        if isinstance(e, ConfigError) and e.owner == "request" and e.field:  # the core names the field; here
            e = BenchError(f"--{e.field.replace('_', '-')}: {e}")         # it came from the flag of that name
        err.print(f"[red]error[/]: {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # usage errors: bad option value, unknown option, missing argument
        err.print(f"[red]error[/]: {e.format_message()}", highlight=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2) or 2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except OSError as e:  # a path the system refuses (name too long, permission, no space): one line, no traceback
        where = f"{e.filename}: " if e.filename else ""
        err.print(f"[red]error[/]: {where}{e.strerror or e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    if rv == 130 and _INTERRUPT["signal"] and not _INTERRUPT["said"]:
        err.print("interrupted")
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
