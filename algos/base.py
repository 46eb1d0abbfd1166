"""The trainer interface, and the shared adapter over d3rlpy 2.8.1.

A trainer is a config dataclass + a class, registered by name.  The harness calls:
    trainer = Cls(config, seed=..., device=...)
    trainer.build(original, generated, mix)     # networks and scalers sized and fitted from the ORIGINAL data;
                                                # `trainer.sampler` draws batches from both (bench.batches)
    trainer.train(n_steps)                      # exactly n_steps gradient steps (checked)
    trainer.act(observation, last_reward)       # the evaluation policy (deterministic where the algo is)
    trainer.save(path)                          # the final policy, as <run>/<policy_filename>
    trainer.save_checkpoint(path) / load_checkpoint(path, step)   # resumable training state
`train` is called once per evaluation interval.  `trainer.warnings` lines go into the run's result.
The run saves `trainer.sampler.state()` beside the checkpoint, so a resumed run draws the same batches.
d3rlpy's algorithms share `D3rlpyTrainer`; a trainer that is not d3rlpy's (DROL) implements the same methods.

d3rlpy's algorithms stay d3rlpy's: each batch goes through the same path as d3rlpy's own `algo.update(batch)`
(a TorchMiniBatch / TorchTrajectoryMiniBatch handed to `algo.impl.update(batch, grad_step)`, then the step
counter), but built from the sampler's arrays (or device tensors) instead of d3rlpy's replay buffer, which
builds every batch sample by sample in Python.  Scalers are fitted here on the original data only (d3rlpy's
`fit` fits them on whatever buffer it is given, which would be the mix of original and generated data).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.config import Config
from bench.dataset import Dataset
from bench.errors import BenchError
from bench.mixing import MixConfig


@dataclass
class TrainerConfig(Config):
    ranges = {
        "batch_size": "[1, 1048576]",
    }
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

    def build(self, original: Dataset, generated: Dataset | None = None, mix: MixConfig | None = None) -> None:
        """The batch sampler over original + generated rows, then the model, sized from the original data."""
        self.sampler = self.make_sampler(original, generated, mix)
        self.build_model(original)

    def make_sampler(self, original: Dataset, generated: Dataset | None, mix: MixConfig | None):
        from bench.batches import TransitionSampler

        return TransitionSampler(original, generated, mix, batch_size=self.config.batch_size, seed=self.seed,
                                 device=self.device)

    @abc.abstractmethod
    def build_model(self, dataset: Dataset) -> None:
        """Networks, optimisers and scalers; `dataset` is the original data."""

    @abc.abstractmethod
    def train(self, n_steps: int) -> None:
        """Exactly n_steps gradient steps on batches from `self.sampler`."""

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


def fit_scalers(d3config, dataset: Dataset, where: str) -> None:
    """Fit d3rlpy's scalers on the original data, as d3rlpy's StandardObservationScaler would (population
    mean and std over every transition's observation), vectorised.  A scaler augbench cannot fit is refused."""
    from bench.d3 import d3rlpy

    obs_scaler = d3config.observation_scaler
    if obs_scaler is not None and not obs_scaler.built:
        if not isinstance(obs_scaler, d3rlpy.preprocessing.StandardObservationScaler):
            raise BenchError(f"{where}: observation scaler {type(obs_scaler).__name__} is not supported "
                             f"(augbench fits StandardObservationScaler on the original data)")
        obs = np.asarray(dataset.observations, np.float64).reshape(len(dataset), -1)
        obs_scaler.mean = obs.mean(axis=0)
        obs_scaler.std = obs.std(axis=0)
    for kind in ("action_scaler", "reward_scaler"):
        scaler = getattr(d3config, kind)
        if scaler is not None and not scaler.built:
            raise BenchError(f"{where}: d3rlpy {kind} {type(scaler).__name__} is not supported (augbench fits "
                             f"only the observation scaler, on the original data)")


class D3rlpyTrainer(Trainer):
    """Shared adapter: subclasses only say how to make the d3rlpy config."""

    @abc.abstractmethod
    def make_d3rlpy_config(self, dataset):
        ...

    def build_model(self, dataset: Dataset) -> None:
        from bench.d3 import d3rlpy

        d3rlpy.seed(self.seed)  # torch's global generator: d3rlpy's initialisation, noise and dropout
        self.algo = self.make_d3rlpy_config(dataset).create(device=self.device)
        if getattr(self.algo, "need_returns_to_go", False):
            raise BenchError(f"{self.name}: d3rlpy algorithms that need returns-to-go per transition are not "
                             f"supported by the array sampler")
        fit_scalers(self.algo.config, dataset, where=f"algo '{self.name}'")
        self.algo.create_impl(tuple(dataset.observations.shape[1:]), int(dataset.actions.shape[1]))

    def torch_batch(self, batch):
        """The TorchMiniBatch d3rlpy's `update` would build from this batch (scalers applied the same way)."""
        import torch
        from d3rlpy.torch_utility import TorchMiniBatch

        from bench.batches import to_torch

        cfg = self.algo.config
        obs, next_obs = to_torch(batch.observations), to_torch(batch.next_observations)
        actions, rewards = to_torch(batch.actions), to_torch(batch.rewards)
        if cfg.observation_scaler is not None:
            obs, next_obs = cfg.observation_scaler.transform(obs), cfg.observation_scaler.transform(next_obs)
        if cfg.action_scaler is not None:
            actions = cfg.action_scaler.transform(actions)
        if cfg.reward_scaler is not None:
            rewards = cfg.reward_scaler.transform(rewards)
        return TorchMiniBatch(
            observations=obs, actions=actions, rewards=rewards, next_observations=next_obs,
            next_actions=torch.zeros_like(actions),  # unused by IQL, TD3+BC and CQL (no SARSA target)
            returns_to_go=torch.zeros_like(rewards), terminals=to_torch(batch.terminals),
            intervals=torch.ones_like(rewards), device=self.device)

    def train(self, n_steps: int) -> None:
        algo = self.algo
        before = algo.grad_step
        for _ in range(n_steps):
            self.last_loss = algo.impl.update(self.torch_batch(self.sampler.sample()), algo.grad_step)
            algo.set_grad_step(algo.grad_step + 1)
        done = algo.grad_step - before
        if done != n_steps:
            raise BenchError(f"{self.name}: d3rlpy ran {done} gradient steps, {n_steps} were asked for")
        self.grad_steps += done

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
