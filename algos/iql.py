"""IQL (Kostrikov et al. 2022) through d3rlpy's IQLConfig."""

from __future__ import annotations

from dataclasses import dataclass

from algos import TRAINERS
from algos.base import D3rlpyTrainer, TrainerConfig

# Sources: IQL paper, Appendix B (expectile 0.7 / temperature 3 for locomotion, 0.9 / 10 for AntMaze; lr 3e-4,
# batch 256, tau 0.005, gamma 0.99); d3rlpy reproductions/offline/iql.py and CORL algorithms/offline/iql.py use
# the same values.  Mazes: OGBench's singletask rewards are already -1/0, so no reward shift is applied.
PRESETS = {
    "locomotion": dict(expectile=0.7, weight_temp=3.0, gamma=0.99),
    "maze": dict(expectile=0.9, weight_temp=10.0, gamma=0.99),
    "giant-maze": dict(expectile=0.9, weight_temp=10.0, gamma=0.995),  # OGBench hyperparameters.sh: giant
    # Not a published setting: the demo's toy preset (a 10x faster target network, small MLPs), chosen by
    # measurement so that IQL solves the toy arena within the demo's 4,000 steps (README, "The demo").
    "toy": dict(expectile=0.9, weight_temp=10.0, gamma=0.99, tau=0.05, hidden_units=(64, 64), batch_size=256),
    # Not a published setting: a tiny model for CPU smoke tests and the contract tester.
    "cpu-smoke": dict(expectile=0.9, weight_temp=10.0, gamma=0.99, hidden_units=(32, 32), batch_size=32),
}


@dataclass
class IQLTrainerConfig(TrainerConfig):
    ranges = {
        "expectile": "(0, 1)",
        "weight_temp": "(0, inf)",
        "max_weight": "(0, inf)",
        "gamma": "(0, 1]",
        "tau": "(0, 1]",
        "actor_learning_rate": "(0, 1]",
        "critic_learning_rate": "(0, 1]",
        "hidden_units": "[1, 65536]",
    }
    expectile: float = 0.9
    weight_temp: float = 10.0
    max_weight: float = 100.0  # d3rlpy default (advantage-weight clip, as in the IQL code)
    gamma: float = 0.99
    actor_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    tau: float = 0.005
    hidden_units: list[int] = (256, 256)


@TRAINERS.register
class IQL(D3rlpyTrainer):
    name = "iql"
    config_class = IQLTrainerConfig
    presets = PRESETS

    def make_d3rlpy_config(self, dataset):
        from bench.d3 import d3rlpy

        c = self.config
        enc = d3rlpy.models.VectorEncoderFactory(hidden_units=list(c.hidden_units))
        return d3rlpy.algos.IQLConfig(
            batch_size=c.batch_size, gamma=c.gamma, expectile=c.expectile, weight_temp=c.weight_temp,
            max_weight=c.max_weight, actor_learning_rate=c.actor_learning_rate,
            critic_learning_rate=c.critic_learning_rate, tau=c.tau, actor_encoder_factory=enc,
            critic_encoder_factory=enc, value_encoder_factory=enc, compile_graph=c.compile_graph,
        )
