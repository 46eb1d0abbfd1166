"""Where data lives. Nothing is written inside the source tree except under results/ and reports/.

- augbench cache (generated toy data, figures, converted datasets): $AUGBENCH_CACHE or ~/.cache/augbench
- OGBench files (real or generated under OGBench's own names): $AUGBENCH_OGBENCH_DIR or ~/.ogbench/data
- Minari datasets: $MINARI_DATASETS_PATH (Minari's own variable) or ~/.minari/datasets

The CLI's --cache-dir / --ogbench-dir options set the same variables for the process.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "AUGBENCH_CACHE"
OGBENCH_ENV = "AUGBENCH_OGBENCH_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/augbench").expanduser()


def ogbench_dir() -> Path:
    return Path(os.environ.get(OGBENCH_ENV) or "~/.ogbench/data").expanduser()


def minari_dir() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH") or "~/.minari/datasets").expanduser()


def figures_dir() -> Path:
    return cache_dir() / "figures"
