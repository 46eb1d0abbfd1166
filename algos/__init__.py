"""Trainers: one per file, each a config dataclass + a class, registered by name in TRAINERS.

Third-party trainers register under the entry-point group `augbench.trainers`.
"""

from bench.registry import Registry

# The built-in trainers, imported on the first look-up (each registers itself under its class's `name`).
TRAINERS: Registry = Registry("trainer", "augbench.trainers",
                              modules=("algos.cql", "algos.drol", "algos.dt", "algos.iql", "algos.td3bc"))
