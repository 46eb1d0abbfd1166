"""How generated data meets the original data in training batches (the trainer side's job).

- `ratio`: every batch holds exactly round(ratio x batch) generated rows, the rest original, as DiffStitch and
  TATU train;
- `synthetic`: generated data only, as SynthER's offline code trains;
- `union`: one buffer holding both, sampled uniformly.
With no generated data (the `none` augmenter) every mode trains on exactly the original dataset.
The batches themselves are drawn by bench.batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.config import Config
from bench.errors import BenchError


@dataclass
class MixConfig(Config):
    mode: Literal["ratio", "synthetic", "union"] = "ratio"
    ratio: float = 0.5  # share of generated samples per batch (mode 'ratio')

    def check(self, where: str) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise BenchError(f"{where}: 'ratio' must be in [0, 1], got {self.ratio}")
