"""TD3+BC (Fujimoto and Gu 2021) through d3rlpy's TD3PlusBCConfig."""

from __future__ import annotations

from dataclasses import dataclass

from algos import TRAINERS
from algos.base import D3rlpyTrainer, TrainerConfig

# Sources: TD3+BC paper, Table 3 (alpha 2.5, lr 3e-4, batch 256, policy noise 0.2 clipped at 0.5, actor update
# every 2 steps, tau 0.005, states normalised); d3rlpy reproductions/offline/td3_plus_bc.py (standard observation
# scaler) and CORL algorithms/offline/td3_bc.py agree.
PRESETS = {
    "locomotion": dict(alpha=2.5, gamma=0.99),
    "maze": dict(alpha=2.5, gamma=0.99),
    "giant-maze": dict(alpha=2.5, gamma=0.995),
    # Not a published setting: a tiny model for CPU smoke tests and the contract tester.
    "cpu-smoke": dict(alpha=2.5, gamma=0.99, hidden_units=(32, 32), batch_size=32),
}


@dataclass
class TD3BCTrainerConfig(TrainerConfig):
    ranges = {
        "alpha": "[0, inf)",
        "gamma": "(0, 1]",
        "tau": "(0, 1]",
        "actor_learning_rate": "(0, 1]",
        "critic_learning_rate": "(0, 1]",
        "target_smoothing_sigma": "[0, inf)",
        "target_smoothing_clip": "[0, inf)",
        "update_actor_interval": "[1, 1000000]",
        "hidden_units": "[1, 65536]",
    }
    alpha: float = 2.5
    gamma: float = 0.99
    actor_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    target_smoothing_sigma: float = 0.2
    target_smoothing_clip: float = 0.5
    update_actor_interval: int = 2
    tau: float = 0.005
    normalize_observations: bool = True
    hidden_units: list[int] = (256, 256)


@TRAINERS.register
class TD3BC(D3rlpyTrainer):
    name = "td3bc"
    config_class = TD3BCTrainerConfig
    presets = PRESETS

    def make_d3rlpy_config(self, dataset):
        from bench.d3 import d3rlpy

        c = self.config
        enc = d3rlpy.models.VectorEncoderFactory(hidden_units=list(c.hidden_units))
        scaler = d3rlpy.preprocessing.StandardObservationScaler() if c.normalize_observations else None
        return d3rlpy.algos.TD3PlusBCConfig(
            batch_size=c.batch_size, gamma=c.gamma, alpha=c.alpha, actor_learning_rate=c.actor_learning_rate,
            critic_learning_rate=c.critic_learning_rate, target_smoothing_sigma=c.target_smoothing_sigma,
            target_smoothing_clip=c.target_smoothing_clip, update_actor_interval=c.update_actor_interval,
            tau=c.tau, actor_encoder_factory=enc, critic_encoder_factory=enc, observation_scaler=scaler,
            compile_graph=c.compile_graph,
        )
