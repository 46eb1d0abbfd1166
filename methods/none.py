"""`none`: no augmentation.  The trainer sees exactly the original dataset."""

from __future__ import annotations

from dataclasses import dataclass

from bench.dataset import Dataset
from methods import AUGMENTERS
from methods.base import Augmenter, AugmenterConfig


@dataclass
class NoneConfig(AugmenterConfig):
    """No options."""


@AUGMENTERS.register
class NoAugmentation(Augmenter):
    name = "none"
    config_class = NoneConfig
    output = "none"

    def fit(self, dataset: Dataset) -> None:
        pass

    def generate(self) -> Dataset | None:
        return None
