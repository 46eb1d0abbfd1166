"""Augmenters: one per file, each a config dataclass + a class, registered by name in AUGMENTERS.

Third-party augmenters register under the entry-point group `augbench.augmenters` (see the README).
"""

from bench.registry import Registry

# The built-in augmenters, imported on the first look-up (each registers itself under its class's `name`).
AUGMENTERS: Registry = Registry("augmenter", "augbench.augmenters",
                                modules=("methods.noise", "methods.none", "methods.ser", "methods.tatu",
                                         "methods.diffstitch", "methods.astro.astro"))
