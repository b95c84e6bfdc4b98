"""FedKSeed-Pro: options and registration; implementation in baselines/fedkseed.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods.fedkseed import FedKSeedOptions


@dataclass(frozen=True)
class FedKSeedProOptions(FedKSeedOptions):
    bias_loss_clip: float = 1000.0
    grad_initial: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.bias_loss_clip, (int, float)) and self.bias_loss_clip > 0):
            raise ValueError(f"bias_loss_clip={self.bias_loss_clip!r} must be > 0")
        if not (isinstance(self.grad_initial, (int, float)) and math.isfinite(self.grad_initial)):
            raise ValueError(f"grad_initial={self.grad_initial!r} must be a finite number")


register("fedkseed-pro", FedKSeedProOptions, "baselines.fedkseed:FedKSeedPro")
