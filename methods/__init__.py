"""Augmenters: one per file, each a config dataclass + a class, registered by name in AUGMENTERS.

Third-party augmenters register under the entry-point group `augbench.augmenters` (see the README).
"""

from bench.registry import Registry

AUGMENTERS: Registry = Registry("augmenter", "augbench.augmenters")

from methods import noise, none  # noqa: E402,F401  (register the built-in augmenters)
