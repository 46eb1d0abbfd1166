"""The trainer interface, and the shared adapter over d3rlpy 2.8.1.

A trainer is a config dataclass + a class, registered by name.  The harness calls:
    trainer = Cls(config, seed=..., device=...)
    trainer.build(original_buffer, dataset)     # networks (and scalers) sized from the original data
    trainer.train(train_buffer, n_steps)        # exactly n_steps gradient steps (checked); the buffer
                                                # may mix original and generated data
    trainer.act(observation, last_reward)       # the evaluation policy (deterministic where the algo is)
    trainer.save(path)                          # the final policy, as <run>/<policy_filename>
    trainer.save_checkpoint(path) / load_checkpoint(path, step)   # resumable training state
`train` is called once per evaluation interval.  `trainer.warnings` lines go into the run's result.
d3rlpy's algorithms share `D3rlpyTrainer`; a trainer that is not d3rlpy's (DROL) implements the same methods.

d3rlpy traps handled here: `fit` writes ./d3rlpy_logs unless given NoopAdapterFactory; `fit(n_steps=N)` with the
default n_steps_per_epoch=10000 silently trains nothing when N < 10000 (so each chunk is one epoch of N steps,
and the step counter is checked afterwards).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.config import Config
from bench.errors import BenchError


@dataclass
class TrainerConfig(Config):
    preset: str = "maze"  # which published defaults fill the fields left unset (see each trainer's PRESETS)
    batch_size: int = 256
    compile_graph: bool = False  # torch.compile of d3rlpy's update (CUDA only; a no-op on CPU)

    def check(self, where: str) -> None:
        if self.batch_size < 1:
            raise BenchError(f"{where}: 'batch_size' must be >= 1, got {self.batch_size}")


def resolve(config_class: type[TrainerConfig], presets: dict[str, dict[str, Any]], overrides: dict | None,
            where: str) -> TrainerConfig:
    """Preset values first, the user's overrides on top; unknown keys refused."""
    overrides = dict(overrides or {})
    preset = overrides.get("preset", config_class.preset)
    if preset not in presets:
        raise BenchError(f"{where}: unknown preset '{preset}' (presets: {', '.join(presets)})")
    return config_class.from_dict({**presets[preset], **overrides, "preset": preset}, where=where)


class Trainer(abc.ABC):
    name: ClassVar[str]
    config_class: ClassVar[type[TrainerConfig]]
    presets: ClassVar[dict[str, dict[str, Any]]]
    needs_trajectories: ClassVar[bool] = False
    policy_filename: ClassVar[str] = "policy.d3"  # what `save` writes, in the run directory

    def __init__(self, config: TrainerConfig, seed: int, device: str):
        self.config = config
        self.seed = seed
        self.device = device
        self.grad_steps = 0
        self.warnings: list[str] = []  # lines recorded in the run's result (e.g. no published preset)

    @abc.abstractmethod
    def build(self, buffer, dataset) -> None:
        ...

    @abc.abstractmethod
    def train(self, buffer, n_steps: int) -> None:
        ...

    @abc.abstractmethod
    def act(self, observation: np.ndarray, last_reward: float = 0.0) -> np.ndarray:
        """The evaluation action; `last_reward` is the reward of the previous step (0 at the start)."""
        ...

    def reset_episode(self) -> None:
        """Called before each evaluation episode (stateful policies reset here)."""

    @abc.abstractmethod
    def save(self, path: Path) -> None:
        ...

    @abc.abstractmethod
    def save_checkpoint(self, path: Path) -> None:
        """Weights and optimizer state, enough to go on training exactly where it stopped."""
        ...

    @abc.abstractmethod
    def load_checkpoint(self, path: Path, grad_steps: int) -> None:
        ...


class D3rlpyTrainer(Trainer):
    """Shared adapter: subclasses only say how to make the d3rlpy config."""

    @abc.abstractmethod
    def make_d3rlpy_config(self, dataset):
        ...

    def build(self, buffer, dataset) -> None:
        from bench.d3 import d3rlpy

        d3rlpy.seed(self.seed)
        self.algo = self.make_d3rlpy_config(dataset).create(device=self.device)
        self.algo.build_with_dataset(buffer)

    def train(self, buffer, n_steps: int) -> None:
        from bench.d3 import d3rlpy

        before = self.algo.grad_step
        self.algo.fit(buffer, n_steps=n_steps, n_steps_per_epoch=n_steps,
                      logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False,
                      save_interval=10**9, **self.fit_kwargs())
        done = self.algo.grad_step - before
        if done != n_steps:
            raise BenchError(f"{self.name}: d3rlpy ran {done} gradient steps, {n_steps} were asked for")
        self.grad_steps += done

    def fit_kwargs(self) -> dict:
        return {}

    def act(self, observation: np.ndarray, last_reward: float = 0.0) -> np.ndarray:
        return self.algo.predict(np.asarray(observation, np.float32)[None])[0]

    def save(self, path: Path) -> None:
        self.algo.save(str(path))

    def save_checkpoint(self, path: Path) -> None:
        self.algo.save_model(str(path))  # modules, optimizers and learning-rate schedulers

    def load_checkpoint(self, path: Path, grad_steps: int) -> None:
        self.algo.load_model(str(path))
        self.algo.set_grad_step(grad_steps)  # periodic updates (targets, delayed actor) keep their phase
        self.grad_steps = grad_steps
