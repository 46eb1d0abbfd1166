"""`noise`: the naive baseline.  Copies of dataset transitions whose states are perturbed by Gaussian noise
scaled to each observation dimension's std; s and s' move by the same offset, the action, reward and terminal
flag are kept (the perturbation S4RL, Sinha et al. 2021, applies on the fly).  The result ignores the dynamics
by construction: it is the reference for data that does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.dataset import Dataset, DatasetMeta
from bench.errors import BenchError
from methods import AUGMENTERS
from methods.base import Augmenter, AugmenterConfig


@dataclass
class NoiseConfig(AugmenterConfig):
    scale: float = 0.1  # noise std, in units of each observation dimension's std over the dataset
    size: float = 1.0  # generated transitions, as a multiple of the dataset's size (sampled with replacement)

    def check(self, where: str) -> None:
        if not self.scale >= 0:
            raise BenchError(f"{where}: 'scale' must be >= 0, got {self.scale}")
        if not self.size > 0:
            raise BenchError(f"{where}: 'size' must be > 0, got {self.size}")


@AUGMENTERS.register("noise")
class GaussianStateNoise(Augmenter):
    name = "noise"
    config_class = NoiseConfig
    output = "transitions"

    def fit(self, dataset: Dataset) -> None:
        self.data = dataset
        obs = np.asarray(dataset.observations, np.float64)
        self.std = obs.std(axis=0).astype(np.float32)

    def generate(self) -> Dataset:
        ds, cfg = self.data, self.config
        n = max(1, int(round(cfg.size * len(ds))))
        idx = np.sort(self.rng.integers(0, len(ds), n))
        offset = (self.rng.standard_normal((n,) + ds.observations.shape[1:]) * cfg.scale * self.std).astype(np.float32)
        terminals = np.asarray(ds.terminals)[idx]
        origins = list(ds.meta.origins)
        if self.name not in origins:
            origins.append(self.name)
        source = np.full((n, 2), -1, np.int32)
        source[:, 0] = np.asarray(ds.episode_index)[idx]
        meta = DatasetMeta(**{**ds.meta.model_dump(), "kind": "transitions", "source": "generated",
                              "origins": origins, "content_hash": "",
                              "extra": {"augmenter": self.name, "config": cfg.to_dict(), "seed": self.seed,
                                        "parent_hash": ds.meta.content_hash}})
        return Dataset(
            observations=np.asarray(ds.observations)[idx] + offset,
            actions=np.asarray(ds.actions)[idx],
            rewards=np.asarray(ds.rewards)[idx],
            next_observations=np.asarray(ds.next_observations)[idx] + offset,
            terminals=terminals,
            timeouts=~terminals,  # every generated transition is an episode of its own
            episode_offsets=np.arange(n + 1, dtype=np.int64),
            origin=np.full(n, origins.index(self.name), np.int16),
            source_episodes=source,
            meta=meta,
        ).with_hash().validate()
