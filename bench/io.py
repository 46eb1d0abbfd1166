"""Atomic file writes: a temporary file in the target folder, fsync, then rename.

A reader never sees a half-written file: either the old one, the new one, or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from bench.errors import BenchError


def ensure_dir(path: Path) -> Path:
    """Create `path` (and parents) or fail with one line saying why."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"{path}: cannot create directory ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise BenchError(f"{path}: directory is not writable")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(path: Path) -> int:
    """Remove the temporary files of earlier writers of `path` that died before their rename (kill -9): their
    names carry the writer's PID, and a writer that is still alive keeps its file.  Returns how many went."""
    removed = 0
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        parts = tmp.name[len(path.name) + 2:].split(".")
        if len(parts) >= 3 and parts[0].startswith("p") and parts[0][1:].isdigit() and not _alive(int(parts[0][1:])):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path` (named `.<name>.p<pid>.<random>.tmp`); on success it is renamed onto
    `path`, on error removed.  Temporaries that killed writers of the same path left are removed first."""
    path = Path(path).expanduser()
    ensure_dir(path.parent)
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise BenchError(f"{path.parent}: cannot write there ({e.strerror or e})") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a finished file gets the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def stage_path(path: Path | str) -> Path:
    """A temporary name beside `path` in the PID-named pattern of `atomic_open` (so the stale-temporary cleanup of
    the next writer removes it if its writer dies), for files that are committed later, as part of a set."""
    path = Path(path).expanduser()
    ensure_dir(path.parent)
    remove_stale_temporaries(path)
    return path.with_name(f".{path.name}.p{os.getpid()}.{os.urandom(4).hex()}.tmp")


def file_sha256(path: Path | str, chunk: int = 1 << 22) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path | str, obj) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def save_npz(path: Path | str, arrays: dict, compress: bool = False) -> Path:
    """Write an `.npz` that `np.load` reads, atomically and byte-for-byte reproducibly (fixed zip timestamps,
    sorted-free insertion order as given).  Uncompressed members can be memory-mapped."""
    import zipfile

    import numpy as np

    path = Path(path).expanduser()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_open(path, "wb") as f:
        with zipfile.ZipFile(f, mode="w", compression=method, allowZip64=True) as zf:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = method
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return path
