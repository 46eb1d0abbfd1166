"""`noise`: the naive baseline.  Copies of dataset transitions whose states are perturbed by Gaussian noise
scaled to each observation dimension's std; s and s' move by the same offset, the action, reward and terminal
flag are kept (the perturbation S4RL, Sinha et al. 2021, applies on the fly).  The result ignores the dynamics
by construction: it is the reference for data that does.

Option `labels` (added later; "copy" is the behaviour before it): "copy" keeps each copied row's reward and
terminal flag, so on an OGBench singletask maze, where they say whether the row's state is at the goal, a moved
state can carry a wrong label (`bench.dvr.label_check` counts them).  "task" relabels every moved row by the
task's own rule from its new state (the rule DiffStitch's and ASTRO's `rewards: exact` use), so that the
labels are right and only the dynamics are violated: the switch separates the two causes of noise's score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    labels: Literal["copy", "task"] = "copy"  # "task": reward and terminal from the moved state (module doc)
    added_later = {"labels": "copy"}

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
    sample_fields = ("scale", "size", "labels")  # the fit (each dimension's std) depends on none of them

    def fit(self, dataset: Dataset) -> None:
        self._check_labels(dataset)
        self.data = dataset
        obs = np.asarray(dataset.observations, np.float64)
        self.std = obs.std(axis=0).astype(np.float32)

    def fitted_state(self) -> dict:
        return {"std": self.std}

    def load_fitted(self, dataset: Dataset, state: dict) -> None:
        self._check_labels(dataset)
        self.data, self.std = dataset, np.asarray(state["std"], np.float32)

    def _check_labels(self, dataset: Dataset) -> None:
        from methods.diffstitch import exact_reward_fn

        self.label_fn = exact_reward_fn(dataset) if self.config.labels == "task" else None
        if self.config.labels == "task" and self.label_fn is None:
            raise BenchError(f"noise: labels 'task' needs an OGBench maze dataset; '{dataset.meta.name}' has no "
                             f"state-based reward rule (use 'copy')")

    def generate(self) -> Dataset:
        ds, cfg = self.data, self.config
        n = max(1, int(round(cfg.size * len(ds))))
        rows = np.sort(self.rng.integers(0, len(ds), n))
        offset = (self.rng.standard_normal((n,) + ds.observations.shape[1:]) * cfg.scale * self.std).astype(np.float32)
        obs = np.asarray(ds.observations)[rows] + offset
        labels = {}
        if self.label_fn is not None:
            import torch

            reward, terminal = self.label_fn(torch.as_tensor(obs))
            labels = {"rewards": reward.numpy().astype(np.float32), "terminals": terminal.numpy()}
        return self.transitions(ds, rows, observations=obs,
                                next_observations=np.asarray(ds.next_observations)[rows] + offset, **labels)
