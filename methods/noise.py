"""`noise`: the naive baseline.  Copies of dataset transitions whose states are perturbed by Gaussian noise
scaled to each observation dimension's std; s and s' move by the same offset, the action, reward and terminal
flag are kept (the perturbation S4RL, Sinha et al. 2021, applies on the fly).  The result ignores the dynamics
by construction: it is the reference for data that does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.dataset import Dataset
from bench.errors import BenchError
from methods import AUGMENTERS
from methods.base import Augmenter, AugmenterConfig


@dataclass
class NoiseConfig(AugmenterConfig):
    ranges = {
        "scale": "[0, inf)",
        "size": "(0, 1000]",
    }
    scale: float = 0.1  # noise std, in units of each observation dimension's std over the dataset
    size: float = 1.0  # generated transitions, as a multiple of the dataset's size (sampled with replacement)

    def check(self, where: str) -> None:
        if not self.scale >= 0:
            raise BenchError(f"{where}: 'scale' must be >= 0, got {self.scale}")
        if not self.size > 0:
            raise BenchError(f"{where}: 'size' must be > 0, got {self.size}")


@AUGMENTERS.register
class GaussianStateNoise(Augmenter):
    name = "noise"
    config_class = NoiseConfig
    output = "transitions"
    sample_fields = ("scale", "size")  # the fit (each dimension's std) depends on neither

    def fit(self, dataset: Dataset) -> None:
        self.data = dataset
        obs = np.asarray(dataset.observations, np.float64)
        self.std = obs.std(axis=0).astype(np.float32)

    def fitted_state(self) -> dict:
        return {"std": self.std}

    def load_fitted(self, dataset: Dataset, state: dict) -> None:
        self.data, self.std = dataset, np.asarray(state["std"], np.float32)

    def generate(self) -> Dataset:
        ds, cfg = self.data, self.config
        n = max(1, int(round(cfg.size * len(ds))))
        rows = np.sort(self.rng.integers(0, len(ds), n))
        offset = (self.rng.standard_normal((n,) + ds.observations.shape[1:]) * cfg.scale * self.std).astype(np.float32)
        return self.transitions(ds, rows, observations=np.asarray(ds.observations)[rows] + offset,
                                next_observations=np.asarray(ds.next_observations)[rows] + offset)
