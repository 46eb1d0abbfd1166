"""Running an augmenter, with the generated dataset cached on disk.

The cache key hashes (dataset content hash, augmenter name, its full config, seed); the file is written
atomically, so a second run with the same key reuses it and a killed run never leaves half a file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path

from bench.dataset import Dataset, load
from bench.errors import BenchError
from bench.io import ensure_dir
from bench.paths import cache_dir


def cache_key(dataset: Dataset, name: str, config: dict, seed: int) -> str:
    blob = json.dumps({"data": dataset.meta.content_hash, "augmenter": name, "config": config, "seed": seed},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_path(key: str) -> Path:
    return cache_dir() / "augmented" / f"{key}.npz"


def augment(dataset: Dataset, name: str, config, seed: int, device: str = "cpu") -> tuple[Dataset | None, str, bool]:
    """(generated data or None, cache key, whether it came from the cache).  `device` is where the augmenter
    trains and samples (the run's device)."""
    from methods import AUGMENTERS

    cls = AUGMENTERS.get(name)
    key = cache_key(dataset, name, config.to_dict(), seed)
    if cls.output == "none":
        return None, key, False
    path = cache_path(key)
    if path.exists():
        return _read(path), key, True
    # One generator per key, however many processes ask at once: an flock, which the kernel releases when its
    # holder dies, so a killed job never leaves it stuck; the loser of the race reads the winner's file.
    ensure_dir(path.parent)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return _read(path), key, True
        return _generate(dataset, cls, name, config, seed, path, device), key, False


def _read(path: Path) -> Dataset:
    try:
        return load(path)
    except BenchError as e:
        raise BenchError(f"corrupt cached augmentation {path} ({e}); delete it to regenerate") from None


def _generate(dataset: Dataset, cls, name: str, config, seed: int, path: Path, device: str) -> Dataset | None:
    factory = None
    if cls.needs_simulator:
        from bench.evaluate import make_env

        factory = lambda: make_env(dataset.meta)  # noqa: E731
    aug = cls(config, seed=seed, simulator_factory=factory, device=device)
    aug.fit(dataset)
    generated = aug.generate()
    if generated is not None:
        generated.validate(where=f"augmenter '{name}' output")
        generated.save(path)
    return generated
