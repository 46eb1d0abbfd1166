"""The augmenter interface: a config dataclass + a class; `fit(dataset)` then `generate()`.

`generate()` returns a canonical Dataset of generated data only (or None when the augmenter makes none), whose
`meta.kind` says whether it holds `transitions` or `trajectories`, and whose per-step provenance names the
augmenter (`meta.origins`) and the source episode(s) each step came from.  Mixing with the original data is
the trainer side's job (bench.batches).

The constructor receives the run's seed (`self.rng`, a numpy Generator; `self.torch_generator`, a torch Generator
on the run's device) and the run's device (`self.device`).  Augmenters see only the dataset.  One that needs
the true simulator (none of the published methods do; the dynamics-violation measurement will) sets
`needs_simulator = True` and receives `simulator_factory`, a callable returning a fresh environment built from
`dataset.meta.simulator`.

Fitting and sampling are cached apart (bench.augment):
- the fitted model, keyed by (data hash, augmenter, the config without its `sample_fields`, seed), is what
  `fitted_state()` returns after `fit`; `load_fitted(dataset, state)` puts it back without fitting again (the
  default fits again: an augmenter with nothing costly to fit need not implement either);
- the generated data, keyed by that and the sample fields and `sample_seed` (None: the run's seed).  Before
  `generate()` the harness calls `begin_sampling(sample_seed)`, which reseeds `self.rng` and
  `self.torch_generator` from it, so asking for more samples or another sample seed never refits, and a cached
  fit samples exactly as a fresh one.
A long fit calls `self.report(done, total)` (a progress bar in the CLI, a log line on SLURM) and, every so often,
`self.save_fit_checkpoint(state)`; it starts with `state = self.fit_checkpoint()` (None on a fresh start), so a
killed or requeued augmentation job resumes its fit instead of starting again.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Literal

import numpy as np

from bench.config import Config
from bench.dataset import Dataset, generated_trajectories, generated_transitions


@dataclass
class AugmenterConfig(Config):
    ranges = {
        "sample_seed": "[0, 4294967296)",
    }
    sample_seed: int | None = None  # seed of the generation; None: the run's seed (a new one reuses the fit)


class Augmenter(abc.ABC):
    name: ClassVar[str]
    config_class: ClassVar[type[AugmenterConfig]] = AugmenterConfig
    output: ClassVar[Literal["transitions", "trajectories", "none"]]
    needs_simulator: ClassVar[bool] = False
    sample_fields: ClassVar[tuple[str, ...]] = ()  # config fields that change the sampling only, not the fit
    limit_fields: ClassVar[tuple[str, ...]] = ()  # sample fields that only cap how much is made (budgets)
    presets: ClassVar[dict[str, dict]] = {}  # named sizes (e.g. `paper`, `cpu-smoke`): `{"preset": NAME}` in a config

    @classmethod
    def resolve_config(cls, overrides: dict | None, where: str | None = None) -> AugmenterConfig:
        """The config from a user's dict: a `preset`'s values first (when one is named), the overrides on top;
        unknown keys and presets refused.  The resolved values are the config (the preset's name is not kept),
        so a preset and the same values spelled out are one config, with one cache key and one run id."""
        overrides = dict(overrides or {})
        where = where or f"augmenter '{cls.name}' config"
        preset = overrides.pop("preset", None)
        if preset is None:
            return cls.config_class.from_dict(overrides, where=where)
        if preset not in cls.presets:
            from bench.errors import BenchError

            allowed = ", ".join(cls.presets) or "none: this augmenter has no presets"
            raise BenchError(f"{where}: unknown preset '{preset}' (presets: {allowed})")
        return cls.config_class.from_dict({**cls.presets[preset], **overrides}, where=where)

    def __init__(self, config: AugmenterConfig, seed: int, simulator_factory: Callable | None = None,
                 device: str = "cpu"):
        self.config = config
        self.seed = seed
        self.device = device  # the run's device (`bench run --device`): where models train and samples are drawn
        self.rng = np.random.default_rng(seed)  # numpy randomness: this generator only, never numpy's global one
        self.simulator_factory = simulator_factory
        self._torch_seed, self._torch_generator = seed, None  # the torch Generator is made on first use
        # Set by the harness (bench.augment) before `fit`: where fit checkpoints go, and who hears progress.
        self.checkpoint_path: Path | None = None
        self.on_progress: Callable[[int, int], None] | None = None

    @property
    def torch_generator(self):
        """A torch Generator on the run's device, seeded from the run's seed (made on first use, so an augmenter
        that needs no torch never imports it)."""
        if self._torch_generator is None:
            import torch

            self._torch_generator = torch.Generator(device=torch.device(self.device)).manual_seed(self._torch_seed)
        return self._torch_generator

    def fit_generator(self, stream: int):
        """A torch Generator on the run's device for the fit, on a stream of its own derived from the seed, so
        that training leaves `torch_generator` (the sampling one) untouched: a fresh fit and a cached one sample
        alike."""
        import torch

        seed = int(np.random.SeedSequence(self.seed, spawn_key=(stream,)).generate_state(1)[0])
        return torch.Generator(device=torch.device(self.device)).manual_seed(seed)

    @abc.abstractmethod
    def fit(self, dataset: Dataset) -> None:
        """Learn whatever the augmenter needs from the original dataset."""

    @abc.abstractmethod
    def generate(self) -> Dataset | None:
        """The generated data (a canonical Dataset with provenance), or None for no data."""

    # -- the fitted model, cached apart from the samples ------------------------------------------------------
    def fitted_state(self) -> dict:
        """What `generate` needs besides the dataset, after `fit` (arrays, tensors, state dicts)."""
        return {}

    def load_fitted(self, dataset: Dataset, state: dict) -> None:
        """Put back a fitted model from `fitted_state()`; the default fits again."""
        self.fit(dataset)

    def begin_sampling(self, sample_seed: int) -> None:
        """Reseed the generators for `generate` (the harness calls this, with `sample_seed` or the run's seed)."""
        self.rng = np.random.default_rng(sample_seed)
        self._torch_seed, self._torch_generator = sample_seed, None  # made again, from this seed, on first use

    # -- progress and fit checkpoints -------------------------------------------------------------------------
    def report(self, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)

    def save_fit_checkpoint(self, state: dict) -> None:
        """Save the fit's state (atomically); a later `fit` of the same model resumes from it."""
        if self.checkpoint_path is None:
            return
        import torch

        from bench.io import atomic_open

        with atomic_open(self.checkpoint_path, "wb") as f:
            torch.save(state, f)

    def fit_checkpoint(self) -> dict | None:
        """The state of an interrupted fit of this same model, or None (a fresh start, or an unreadable file)."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return None
        import torch

        try:
            return torch.load(self.checkpoint_path, weights_only=False)
        except Exception:  # noqa: BLE001  (a torn or foreign file: fit from the start)
            return None

    def provenance(self) -> dict:
        """What generated data records of its making (beside the augmenter's name and the parent's hash)."""
        return {"config": self.config.to_dict(), "seed": self.seed}

    def transitions(self, source: Dataset, rows: np.ndarray | None, observations: np.ndarray,
                    next_observations: np.ndarray, actions: np.ndarray | None = None,
                    rewards: np.ndarray | None = None, terminals: np.ndarray | None = None) -> Dataset:
        """A generated `transitions` dataset (bench.dataset.generated_transitions): each step its own episode,
        provenance pointing at the source rows' episodes."""
        return generated_transitions(source, self.name, self.provenance(), rows, observations, next_observations,
                                     actions, rewards, terminals)

    def trajectories(self, source: Dataset, **segments) -> Dataset:
        """A generated `trajectories` dataset from segments laid end to end (bench.dataset.generated_trajectories:
        observations, actions, rewards, next_observations, lengths, source_episode, source_step, and for
        stitches target_episode, target_step)."""
        return generated_trajectories(source, self.name, self.provenance(), **segments)
