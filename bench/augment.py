"""Running an augmenter: the fitted model and the generated data, each cached on disk.

- The fitted model (`<cache>/fitted/<fit key>.pt`, the augmenter's `fitted_state()`): the fit key hashes
  (dataset content hash, augmenter name, its config without the sample-only fields, seed).
- The generated data (`<cache>/augmented/<key>.npz`): the key hashes the fit key, the sample-only fields and the
  sample seed (`sample_seed`, or the run's seed).  More samples, or another sample seed, reuse the fitted model.
- An interrupted fit resumes from `<cache>/fitted/<fit key>.partial.pt`, which the augmenter saves itself
  (`save_fit_checkpoint`); it goes once the fit is done.
Every file is written atomically, under an flock per key that the kernel releases when its holder dies, so
concurrent jobs never generate one augmentation twice and a killed job never leaves half a file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Callable

from bench.dataset import Dataset, load
from bench.errors import BenchError
from bench.io import atomic_open, ensure_dir
from bench.paths import cache_dir


def _hash(blob: dict) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20]


def _identity(name: str, config: dict) -> dict:
    from bench.config import hashed_config
    from methods import AUGMENTERS

    return hashed_config(AUGMENTERS, name, config)


def fit_key(dataset: Dataset, name: str, config: dict, seed: int, sample_fields: tuple[str, ...] = ()) -> str:
    config = _identity(name, config)
    fit_config = {k: v for k, v in config.items() if k not in sample_fields and k != "sample_seed"}
    return _hash({"data": dataset.meta.content_hash, "augmenter": name, "config": fit_config, "seed": seed})


def cache_key(dataset: Dataset, name: str, config: dict, seed: int, sample_fields: tuple[str, ...] | None = None
              ) -> str:
    """The generated data's key.  `sample_fields` defaults to the registered augmenter's."""
    if sample_fields is None:
        from methods import AUGMENTERS

        sample_fields = AUGMENTERS.get(name).sample_fields
    dropped = set(config) - set(_identity(name, config))  # options at their old values, as `fit_key` drops them
    sample = {k: config.get(k) for k in sample_fields if k not in dropped}
    sample_seed = config.get("sample_seed")
    return _hash({"fit": fit_key(dataset, name, config, seed, sample_fields), "sample": sample,
                  "sample_seed": seed if sample_seed is None else sample_seed})


def cache_path(key: str) -> Path:
    return cache_dir() / "augmented" / f"{key}.npz"


def fitted_path(key: str) -> Path:
    return cache_dir() / "fitted" / f"{key}.pt"


def log_progress(name: str) -> Callable[[int, int], None]:
    """A progress line on stderr at most every 30 s (and at the end): what a SLURM log gets."""
    last = [0.0]
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 30 or done >= total:
            last[0] = now
            print(f"augment {name}: fit {done}/{total} ({100 * done / max(total, 1):.0f}%, {now - start:.0f} s)",
                  file=sys.stderr, flush=True)
    return report


def augment(dataset: Dataset, name: str, config, seed: int, device: str = "cpu",
            progress: Callable[[int, int], None] | None = None) -> tuple[Dataset | None, str, bool]:
    """(generated data or None, cache key, whether it came from the cache).  `device` is where the augmenter
    trains and samples (the run's device); `progress(done, total)` hears the fit's progress (default: a log line
    on stderr every 30 s)."""
    from methods import AUGMENTERS

    cls = AUGMENTERS.get(name)
    cfg = config.to_dict()
    key = cache_key(dataset, name, cfg, seed, cls.sample_fields)
    if cls.output == "none":
        return None, key, False
    path = cache_path(key)
    if path.exists():
        return _read(path), key, True
    ensure_dir(path.parent)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # the loser of the race reads the winner's file
            return _read(path), key, True
        aug = _fitted(dataset, cls, name, config, seed, device, progress or log_progress(name))
        aug.begin_sampling(seed if config.sample_seed is None else config.sample_seed)
        generated = aug.generate()
        if generated is not None:
            generated.validate(where=f"augmenter '{name}' output")
            generated.save(path)
        return generated, key, False


def _fitted(dataset: Dataset, cls, name: str, config, seed: int, device: str, progress):
    """The augmenter with its model: from the fit cache, or fitted now (resuming an interrupted fit)."""
    import torch

    factory = None
    if cls.needs_simulator:
        from bench.evaluate import make_env

        factory = lambda: make_env(dataset.meta)  # noqa: E731
    aug = cls(config, seed=seed, simulator_factory=factory, device=device)
    fkey = fit_key(dataset, name, config.to_dict(), seed, cls.sample_fields)
    fitted = fitted_path(fkey)
    ensure_dir(fitted.parent)
    with open(fitted.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if fitted.exists():
            try:
                state = torch.load(fitted, weights_only=False)
            except Exception as e:  # noqa: BLE001
                raise BenchError(f"corrupt fitted model {fitted} ({type(e).__name__}); delete it to fit again") \
                    from None
            aug.load_fitted(dataset, state)
            return aug
        aug.checkpoint_path = fitted.with_suffix(".partial.pt")
        aug.on_progress = progress
        aug.fit(dataset)
        with atomic_open(fitted, "wb") as f:
            torch.save(aug.fitted_state(), f)
        aug.checkpoint_path.unlink(missing_ok=True)
        return aug


def _read(path: Path) -> Dataset:
    try:
        return load(path)
    except BenchError as e:
        raise BenchError(f"corrupt cached augmentation {path} ({e}); delete it to regenerate") from None
