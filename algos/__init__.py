"""Trainers: one per file, each a config dataclass + a class, registered by name in TRAINERS.

Third-party trainers register under the entry-point group `augbench.trainers`.
"""

from bench.registry import Registry

TRAINERS: Registry = Registry("trainer", "augbench.trainers")

from algos import cql, drol, dt, iql, td3bc  # noqa: E402,F401  (register the built-in trainers)
