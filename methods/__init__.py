"""Augmenters: one per file, each a config dataclass + a class, registered by name in AUGMENTERS.

Third-party augmenters register under the entry-point group `augbench.augmenters`.
"""

from bench.registry import Registry

AUGMENTERS: Registry = Registry("augmenter", "augbench.augmenters")
