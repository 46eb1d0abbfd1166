"""Carry a study's unfinished work to another machine: `bench carry pack` / `bench carry unpack`.

Finished runs travel through the study's archive (bench.sweep.archive).  What does not is the work in between: a
run interrupted at a checkpoint, an augmentation already fitted and sampled, and, for data generated here, the
data itself.  The last matters most: generated point mazes are bitwise the same on one machine but not across
CPUs (MuJoCo's floating point), and run ids and augmentation keys hash the data's content, so on another
machine's own generation a carried checkpoint would be another run's, and would not be resumed.

`pack FILE OUT.tar` writes one tar (gzip when OUT ends in `.gz`), atomically, holding `carry.json` (the manifest:
study, commit, every file's root, path, size and sha256, the carried runs and their last checkpointed step) and:
- `runs/<run id>/...`: every run of the study (or of `--only`) that is incomplete here, with its checkpoint
  (`checkpoint.pt` and the model it names) and curve; never its claim or temporaries.  A study with a run that a
  live process is training is refused: stop the sweep first (its last checkpoint stays).
- `cache/augmented/<key>.*`: the cached augmentation (generated data, simulator DVR) of every unfinished run,
  and where it is not generated yet, its fitted model or interrupted fit (`cache/fitted/<fit key>.*`).
- the generated datasets those runs read (OGBench-format train and val files and their sidecar), under `ogbench/`
  or `cache/`, where this machine keeps them.  Data read as it is (OGBench downloads, Minari) is not carried:
  it is the same file everywhere.

`unpack ARCHIVE` checks every member against the manifest before it writes anything, refuses a destination that
holds other content (another generation of the data, another run's checkpoint) and writes each file atomically;
files already there with the same content are left alone.  Then `bench sweep FILE` resumes the runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path, PurePosixPath

from bench.errors import BenchError
from bench.io import atomic_open, file_sha256

FORMAT = "augbench-carry/1"
MANIFEST = "carry.json"


def _roots() -> dict[str, Path]:
    from bench.paths import cache_dir, ogbench_dir
    from bench.run import results_root

    return {"runs": results_root() / "runs", "cache": cache_dir(), "ogbench": ogbench_dir()}


def _where(path: Path, roots: dict[str, Path]) -> tuple[str, str]:
    """(root name, path inside it) of a file under one of the roots."""
    path = path.resolve()
    for name, root in roots.items():
        try:
            return name, path.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    raise BenchError(f"{path}: not under the results, cache or OGBench folder, so it cannot be carried")


def _last_step(run_dir: Path) -> int:
    try:
        rows = (run_dir / "curve.csv").read_text().strip().splitlines()[1:]
        return int(rows[-1].split(",")[0]) if rows else 0
    except (OSError, ValueError, IndexError):
        return 0


def collect(study_file: Path, only: str | None = None) -> tuple[dict, list[tuple[str, str, Path]]]:
    """(manifest without the file list, [(root name, path inside it, file)]) of what `pack` carries."""
    from bench import data, sweep
    from bench.data import pointmaze
    from bench.run import is_claimed, results_root

    study, runs = sweep.expand(study_file)
    archive = sweep.archive_of(study)
    states = sweep.merged_states(sweep.run_states(), archive, runs)
    todo = sweep.select(runs, states, force=False, retry_failed=True, only=only)
    roots = _roots()
    files: list[tuple[str, str, Path]] = []
    carried_runs = []
    for r in todo:
        run_dir = results_root() / "runs" / (r.run_id or "-")
        if r.run_id is not None and is_claimed(run_dir):  # even before its first checkpoint: it would miss it
            raise BenchError(f"{r.label} ({r.run_id}) is training now (a live process holds its claim); stop the "
                             f"sweep first (Ctrl-C or SIGTERM keeps its last checkpoint), then pack")
        if r.run_id is None or not (run_dir / "checkpoint.pt").exists():
            continue
        for f in sorted(run_dir.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                files.append(("runs", f"{r.run_id}/{f.name}", f))
        carried_runs.append({"run_id": r.run_id, "label": r.label, "step": _last_step(run_dir)})
    augmented = roots["cache"] / "augmented"
    for key in sorted({r.aug_key for r in todo if r.aug_key}):
        for f in sorted(augmented.glob(f"{key}.*")) if augmented.is_dir() else []:
            if f.is_file() and f.suffix != ".lock":
                files.append(("cache", f"augmented/{f.name}", f))
    files += _fits(todo, augmented, roots["cache"] / "fitted")
    for name in sorted({r.request.dataset for r in todo}):
        base = data.generable_base(name)
        if base is None:
            continue  # read as it is: the same file on every machine
        train = data.file_for(base)
        if not train.exists():
            continue
        problem = pointmaze.check_set(train)
        if problem:
            raise BenchError(f"{train}: {problem}; regenerate it (`bench data make {base}`) before packing")
        for f in (train, pointmaze.val_path(train), pointmaze.sidecar_path(train)):
            files.append((*_where(f, roots), f))
    if not files:
        raise BenchError(f"{study_file}: nothing to carry ({len(todo)} unfinished runs, none with a checkpoint, "
                         f"cached augmentation or generated data on this machine)")
    from bench.provenance import git_state

    head = {"format": FORMAT, "study": study.name, "study_file": str(study_file), "only": only,
            "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git": git_state(),
            "runs": carried_runs}
    return head, files


def _fits(todo, augmented: Path, fitted: Path) -> list[tuple[str, str, Path]]:
    """The fitted models (or interrupted fits) of the augmentations not generated yet, so the fit is not
    repeated: `<cache>/fitted/<fit key>.pt` / `.partial.pt` (bench.augment)."""
    from bench import data
    from bench.augment import fit_key
    from bench.run import check_request
    from methods import AUGMENTERS

    out: dict[str, tuple[str, str, Path]] = {}
    for r in todo:
        if not r.aug_key or (augmented / f"{r.aug_key}.npz").exists() or not fitted.is_dir():
            continue
        q = r.request
        key = fit_key(data.load(q.dataset, q.task), q.augmenter, check_request(q).aug_config.to_dict(), q.seed,
                      AUGMENTERS.get(q.augmenter).sample_fields)
        for f in sorted(fitted.glob(f"{key}.*")):
            if f.is_file() and f.suffix != ".lock":
                out[f.name] = ("cache", f"fitted/{f.name}", f)
    return list(out.values())


def pack(study_file: Path, out_path: Path, only: str | None = None) -> dict:
    """Write the carry archive; returns its manifest."""
    head, files = collect(study_file, only)
    entries = [{"root": root, "path": rel, "bytes": f.stat().st_size, "sha256": file_sha256(f)} for root, rel, f in files]
    manifest = {**head, "files": entries}
    blob = json.dumps(manifest, indent=2, sort_keys=True).encode()
    mode = "w:gz" if out_path.name.endswith(".gz") else "w"
    with atomic_open(out_path, "wb") as raw:
        with tarfile.open(fileobj=raw, mode=mode) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(blob), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(blob))
            for (root, rel, f), e in zip(files, entries):
                content = f.read_bytes()
                if hashlib.sha256(content).hexdigest() != e["sha256"]:
                    raise BenchError(f"{f}: changed while it was being packed; pack again")
                info = tarfile.TarInfo(f"{root}/{rel}")
                info.size, info.mtime, info.mode = len(content), int(f.stat().st_mtime), 0o644
                tar.addfile(info, io.BytesIO(content))
    return manifest


def _check_entry(e, where: str) -> tuple[str, str]:
    if not isinstance(e, dict) or not {"root", "path", "bytes", "sha256"} <= set(e):
        raise BenchError(f"{where}: a file entry of {MANIFEST} lacks root, path, bytes or sha256")
    rel = PurePosixPath(str(e["path"]))
    if e["root"] not in ("runs", "cache", "ogbench") or rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise BenchError(f"{where}: {MANIFEST} names '{e['root']}/{e['path']}', outside the results, cache and "
                         f"OGBench folders")
    return e["root"], rel.as_posix()


def unpack(archive: Path) -> dict:
    """Restore a carry archive; returns {'manifest', 'written', 'same'}."""
    where = str(archive)
    try:
        tar = tarfile.open(archive, mode="r:*")
    except OSError as e:
        raise BenchError(f"{where}: cannot be read ({e.strerror or e})") from None
    except tarfile.TarError:
        raise BenchError(f"{where}: not a tar or tar.gz file, so not a carry archive (`bench carry pack` makes one)"
                         ) from None
    with tar:
        try:
            member = tar.extractfile(MANIFEST)
            manifest = json.loads(member.read()) if member else None
        except KeyError:
            raise BenchError(f"{where}: no {MANIFEST} in it, so it is not a carry archive (`bench carry pack` "
                             f"makes one)") from None
        except (ValueError, tarfile.TarError, OSError) as e:
            raise BenchError(f"{where}: {MANIFEST} cannot be read ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BenchError(f"{where}: {MANIFEST} is not a {FORMAT} manifest")
        if not isinstance(manifest.get("files"), list) or not isinstance(manifest.get("runs", []), list):
            raise BenchError(f"{where}: {MANIFEST} has no list of files or of runs")
        roots = _roots()
        plan = []
        for e in manifest["files"]:
            root, rel = _check_entry(e, where)
            plan.append((e, f"{root}/{rel}", roots[root] / rel))
        # 1. every member is there and is what the manifest says, before anything is written
        for e, name, _ in plan:
            try:
                fh = tar.extractfile(name)
                digest = hashlib.sha256(fh.read()).hexdigest() if fh else None
            except KeyError:
                raise BenchError(f"{where}: {name} is named in {MANIFEST} but missing") from None
            except (tarfile.TarError, OSError, EOFError) as err:
                raise BenchError(f"{where}: {name} cannot be read ({err})") from None
            if digest != e["sha256"]:
                raise BenchError(f"{where}: {name} is damaged (its sha256 is not the manifest's)")
        # 2. no destination holds other content
        same = set()
        for e, name, dest in plan:
            if dest.exists():
                if file_sha256(dest) != e["sha256"]:
                    raise BenchError(f"{dest}: already exists with other content than the carried {name} (another "
                                     f"generation of the data, or another checkpoint); move it away to restore the "
                                     f"carried one; nothing was written")
                same.add(name)
        # 3. write: data and augmentations first, runs last
        written = 0
        for e, name, dest in sorted(plan, key=lambda p: p[1].startswith("runs/")):
            if name in same:
                continue
            with atomic_open(dest, "wb") as f:
                f.write(tar.extractfile(name).read())
            written += 1
    return {"manifest": manifest, "written": written, "same": len(same)}
