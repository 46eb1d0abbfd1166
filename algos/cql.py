"""CQL (Kumar et al. 2020), continuous actions, through d3rlpy's CQLConfig."""

from __future__ import annotations

from dataclasses import dataclass

from algos import TRAINERS
from algos.base import D3rlpyTrainer, TrainerConfig

# Sources: d3rlpy reproductions/offline/cql.py (actor lr 1e-4, critic lr 3e-4, conservative weight 5 for
# locomotion, 10 action samples, 3 x 256 critics in CORL); CQL paper Appendix F (alpha 5 for MuJoCo, lagrange
# threshold for AntMaze; here a fixed weight 5 as CORL's AntMaze config uses with reward shaping off).
PRESETS = {
    "locomotion": dict(conservative_weight=5.0, gamma=0.99),
    "maze": dict(conservative_weight=5.0, gamma=0.99),
    "giant-maze": dict(conservative_weight=5.0, gamma=0.995),
    # Not a published setting: a tiny model for CPU smoke tests and the contract tester.
    "cpu-smoke": dict(conservative_weight=5.0, gamma=0.99, hidden_units=(32, 32), n_action_samples=2,
                      batch_size=32),
}


@dataclass
class CQLTrainerConfig(TrainerConfig):
    ranges = {
        "conservative_weight": "[0, inf)",
        "gamma": "(0, 1]",
        "tau": "(0, 1]",
        "actor_learning_rate": "(0, 1]",
        "critic_learning_rate": "(0, 1]",
        "temp_learning_rate": "(0, 1]",
        "n_action_samples": "[1, 1024]",
        "hidden_units": "[1, 65536]",
    }
    conservative_weight: float = 5.0
    gamma: float = 0.99
    actor_learning_rate: float = 1e-4
    critic_learning_rate: float = 3e-4
    temp_learning_rate: float = 1e-4
    n_action_samples: int = 10
    tau: float = 0.005
    hidden_units: list[int] = (256, 256, 256)


@TRAINERS.register
class CQL(D3rlpyTrainer):
    name = "cql"
    config_class = CQLTrainerConfig
    presets = PRESETS

    def make_d3rlpy_config(self, dataset):
        from bench.d3 import d3rlpy

        c = self.config
        enc = d3rlpy.models.VectorEncoderFactory(hidden_units=list(c.hidden_units))
        return d3rlpy.algos.CQLConfig(
            batch_size=c.batch_size, gamma=c.gamma, conservative_weight=c.conservative_weight,
            actor_learning_rate=c.actor_learning_rate, critic_learning_rate=c.critic_learning_rate,
            temp_learning_rate=c.temp_learning_rate, alpha_learning_rate=0.0, n_action_samples=c.n_action_samples,
            tau=c.tau, actor_encoder_factory=enc, critic_encoder_factory=enc, compile_graph=c.compile_graph,
        )
