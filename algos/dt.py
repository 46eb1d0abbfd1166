"""Decision Transformer (Chen et al. 2021) through d3rlpy's DecisionTransformerConfig.

It trains on whole trajectories: an augmenter whose output is `transitions` cannot feed it (the papers print
'-'), and the harness refuses that pair.  Batches are windows within the canonical episodes (`episode_offsets`,
bench.batches.TrajectorySampler), handed to d3rlpy's transformer update as d3rlpy's own `update` does.  Unlike
d3rlpy's MDPDataset, a terminal in the middle of an episode (an OGBench singletask trajectory passing its goal)
does not split the episode: the window, its timesteps and returns-to-go run on to the episode's end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algos import TRAINERS
from algos.base import D3rlpyTrainer, TrainerConfig

# Sources: d3rlpy reproductions/offline/decision_transformer.py and the DT paper's Table 8 (context 20, batch 64,
# lr 1e-4, weight decay 1e-4, 3 layers, 1 head, 128-d embedding, dropout 0.1, grad-norm clip 0.25, warmup 10k
# steps).  `cpu-smoke` is a deliberately tiny model for CPU smoke tests, not a published setting.
PRESETS = {
    "locomotion": dict(batch_size=64, context_size=20, num_layers=3, num_heads=1, hidden_size=128,
                       warmup_steps=10000, gamma=0.99),
    "maze": dict(batch_size=64, context_size=20, num_layers=3, num_heads=1, hidden_size=128, warmup_steps=10000,
                 gamma=0.99),
    "cpu-smoke": dict(batch_size=16, context_size=5, num_layers=1, num_heads=1, hidden_size=32, warmup_steps=10,
                      gamma=0.99),
}


@dataclass
class DTTrainerConfig(TrainerConfig):
    ranges = {
        "batch_size": "[1, 65536]",
        "context_size": "[1, 10000]",
        "num_layers": "[1, 64]",
        "num_heads": "[1, 64]",
        "hidden_size": "[1, 65536]",
        "learning_rate": "(0, 1]",
        "weight_decay": "[0, inf)",
        "clip_grad_norm": "(0, inf)",
        "warmup_steps": "[0, 1000000000]",
        "dropout": "[0, 1)",
        "gamma": "(0, 1]",
        "max_timestep": "[1, 10000000]",
        "target_return": "(-inf, inf)",
    }
    batch_size: int = 64
    context_size: int = 20
    num_layers: int = 3
    num_heads: int = 1
    hidden_size: int = 128
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    clip_grad_norm: float = 0.25
    warmup_steps: int = 10000
    dropout: float = 0.1
    gamma: float = 0.99
    max_timestep: int = 2001  # longest episode position embedded
    target_return: float | None = None  # None: the highest episode return in the training data


@TRAINERS.register
class DecisionTransformer(D3rlpyTrainer):
    name = "dt"
    config_class = DTTrainerConfig
    presets = PRESETS
    needs_trajectories = True

    def make_d3rlpy_config(self, dataset):
        from bench.d3 import d3rlpy

        c = self.config
        if c.target_return is not None:
            self.target_return = float(c.target_return)
        else:
            returns = np.add.reduceat(np.asarray(dataset.rewards, np.float64), dataset.episode_offsets[:-1])
            self.target_return = float(returns.max())
        return d3rlpy.algos.DecisionTransformerConfig(
            batch_size=c.batch_size, context_size=c.context_size, num_heads=c.num_heads, num_layers=c.num_layers,
            learning_rate=c.learning_rate, encoder_factory=d3rlpy.models.VectorEncoderFactory([c.hidden_size]),
            optim_factory=d3rlpy.optimizers.AdamWFactory(
                weight_decay=c.weight_decay, clip_grad_norm=c.clip_grad_norm,
                lr_scheduler_factory=d3rlpy.optimizers.WarmupSchedulerFactory(warmup_steps=c.warmup_steps)),
            attn_dropout=c.dropout, resid_dropout=c.dropout,
            embed_dropout=c.dropout, max_timestep=c.max_timestep, position_encoding_type=
            d3rlpy.PositionEncodingType.GLOBAL, compile_graph=c.compile_graph,
        )

    def make_sampler(self, original, generated, mix):
        from bench.batches import TrajectorySampler

        return TrajectorySampler(original, generated, mix, batch_size=self.config.batch_size,
                                 context=self.config.context_size, seed=self.seed, device=self.device)

    def torch_batch(self, batch):
        """The TorchTrajectoryMiniBatch d3rlpy's transformer `update` would build (no scalers configured)."""
        from d3rlpy.torch_utility import TorchTrajectoryMiniBatch

        from bench.batches import to_torch

        fields = ("observations", "actions", "rewards", "returns_to_go", "terminals", "timesteps", "masks")
        return TorchTrajectoryMiniBatch(**{k: to_torch(getattr(batch, k)) for k in fields}, device=self.device)

    def reset_episode(self) -> None:
        self.policy = self.algo.as_stateful_wrapper(target_return=self.target_return)
        self.last_reward = 0.0

    def act(self, observation: np.ndarray, last_reward: float = 0.0) -> np.ndarray:
        return self.policy.predict(np.asarray(observation, np.float32), float(last_reward))
