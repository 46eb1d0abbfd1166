"""The augmenter interface: a config dataclass + a class; `fit(dataset)` then `generate()`.

`generate()` returns a canonical Dataset of generated data only (or None when the augmenter makes none), whose
`meta.kind` says whether it holds `transitions` or `trajectories`, and whose per-step provenance names the
augmenter (`meta.origins`) and the source episode(s) each step came from.  Mixing with the original data is
the trainer side's job (bench.mixing).

Augmenters see only the dataset.  One that needs the true simulator (none of the published methods do; the
dynamics-violation measurement will) sets `needs_simulator = True` and receives `simulator_factory`, a
callable returning a fresh environment built from `dataset.meta.simulator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Literal

import numpy as np

from bench.config import Config
from bench.dataset import Dataset


@dataclass
class AugmenterConfig(Config):
    pass


class Augmenter:
    name: ClassVar[str]
    config_class: ClassVar[type[AugmenterConfig]] = AugmenterConfig
    output: ClassVar[Literal["transitions", "trajectories", "none"]]
    needs_simulator: ClassVar[bool] = False

    def __init__(self, config: AugmenterConfig, seed: int, simulator_factory: Callable | None = None):
        self.config = config
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.simulator_factory = simulator_factory

    def fit(self, dataset: Dataset) -> None:
        raise NotImplementedError

    def generate(self) -> Dataset | None:
        raise NotImplementedError
