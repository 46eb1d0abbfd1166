"""The augmenter interface: a config dataclass + a class; `fit(dataset)` then `generate()`.

`generate()` returns a canonical Dataset of generated data only (or None when the augmenter makes none), whose
`meta.kind` says whether it holds `transitions` or `trajectories`, and whose per-step provenance names the
augmenter (`meta.origins`) and the source episode(s) each step came from.  Mixing with the original data is
the trainer side's job (bench.mixing).

The constructor receives the run's seed (`self.rng`, a numpy Generator; `self.torch_generator`, a torch Generator
on the run's device) and the run's device (`self.device`).  Augmenters see only the dataset.  One that needs the true simulator (none of the published methods do; the
dynamics-violation measurement will) sets `needs_simulator = True` and receives `simulator_factory`, a
callable returning a fresh environment built from `dataset.meta.simulator`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, ClassVar, Literal

import numpy as np

from bench.config import Config
from bench.dataset import Dataset


@dataclass
class AugmenterConfig(Config):
    pass


class Augmenter(abc.ABC):
    name: ClassVar[str]
    config_class: ClassVar[type[AugmenterConfig]] = AugmenterConfig
    output: ClassVar[Literal["transitions", "trajectories", "none"]]
    needs_simulator: ClassVar[bool] = False

    def __init__(self, config: AugmenterConfig, seed: int, simulator_factory: Callable | None = None,
                 device: str = "cpu"):
        self.config = config
        self.seed = seed
        self.device = device  # the run's device (`bench run --device`): where models train and samples are drawn
        self.rng = np.random.default_rng(seed)  # numpy randomness: this generator only, never numpy's global one
        self.simulator_factory = simulator_factory
        self._torch_generator = None

    @property
    def torch_generator(self):
        """A torch Generator on the run's device, seeded from the run's seed (made on first use, so an augmenter
        that needs no torch never imports it)."""
        if self._torch_generator is None:
            import torch

            self._torch_generator = torch.Generator(device=torch.device(self.device)).manual_seed(self.seed)
        return self._torch_generator

    @abc.abstractmethod
    def fit(self, dataset: Dataset) -> None:
        """Learn whatever the augmenter needs from the original dataset."""

    @abc.abstractmethod
    def generate(self) -> Dataset | None:
        """The generated data (a canonical Dataset with provenance), or None for no data."""

    def transitions(self, source: Dataset, rows: np.ndarray, observations: np.ndarray,
                    next_observations: np.ndarray, actions: np.ndarray | None = None,
                    rewards: np.ndarray | None = None) -> Dataset:
        """A generated `transitions` dataset: each step its own episode, provenance pointing at the source
        rows' episodes.  Actions, rewards and terminal flags default to those of the source rows."""
        rows = np.asarray(rows)
        n = len(rows)
        origins = list(source.meta.origins)
        if self.name not in origins:
            origins.append(self.name)
        terminals = np.asarray(source.terminals)[rows]
        prov = np.full((n, 2), -1, np.int32)
        prov[:, 0] = np.asarray(source.episode_index)[rows]
        meta = source.meta.model_copy(update={
            "kind": "transitions", "source": "generated", "origins": origins, "content_hash": "",
            "extra": {"augmenter": self.name, "config": self.config.to_dict(), "seed": self.seed,
                      "parent_hash": source.meta.content_hash}})
        return Dataset(
            observations=np.asarray(observations, np.float32),
            actions=np.asarray(source.actions[rows] if actions is None else actions, np.float32),
            rewards=np.asarray(source.rewards[rows] if rewards is None else rewards, np.float32),
            next_observations=np.asarray(next_observations, np.float32),
            terminals=terminals,
            timeouts=~terminals,
            episode_offsets=np.arange(n + 1, dtype=np.int64),
            origin=np.full(n, origins.index(self.name), np.int16),
            source_episodes=prov,
            meta=meta,
        ).with_hash().validate()
