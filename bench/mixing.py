"""How generated data meets the original data in training batches (the trainer side's job).

- `ratio`: every batch holds `ratio` generated and 1 - ratio original samples, as DiffStitch and TATU train
  (d3rlpy's MixedReplayBuffer draws int((1 - ratio) * batch) original samples, the rest generated);
- `synthetic`: generated data only, as SynthER's offline code trains;
- `union`: one buffer holding both, sampled uniformly.
With no generated data (the `none` augmenter) every mode trains on exactly the original dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.config import Config
from bench.dataset import Dataset
from bench.errors import BenchError


@dataclass
class MixConfig(Config):
    mode: Literal["ratio", "synthetic", "union"] = "ratio"
    ratio: float = 0.5  # share of generated samples per batch (mode 'ratio')

    def check(self, where: str) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise BenchError(f"{where}: 'ratio' must be in [0, 1], got {self.ratio}")


def build_buffers(original: Dataset, generated: Dataset | None, mix: MixConfig):
    """(reference buffer of the original data, training buffer)."""
    from bench.d3 import d3rlpy

    ref = original.to_d3rlpy()
    if generated is None:
        return ref, ref
    gen = generated.to_d3rlpy()
    if mix.mode == "synthetic":
        return ref, gen
    if mix.mode == "union":
        return ref, d3rlpy.dataset.ReplayBuffer(d3rlpy.dataset.InfiniteBuffer(),
                                                episodes=list(ref.episodes) + list(gen.episodes))
    return ref, d3rlpy.dataset.MixedReplayBuffer(primary_replay_buffer=ref, secondary_replay_buffer=gen,
                                                 secondary_mix_ratio=mix.ratio)
