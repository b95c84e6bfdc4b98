"""FedKSeed: options and registration; implementation (and the options' meaning) in baselines/fedkseed.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods._checks import check_lr_option


@dataclass(frozen=True)
class FedKSeedOptions:
    eps: float = 5e-4
    downlink: str = "per_round"
    lr: float = 0.0

    def __post_init__(self) -> None:
        check_lr_option(self.lr)
        if not (isinstance(self.eps, (int, float)) and self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps={self.eps!r} must be a finite number > 0")
        if self.downlink not in ("per_round", "merged"):
            raise ValueError(f"downlink={self.downlink!r} must be one of per_round, merged")


register("fedkseed", FedKSeedOptions, "baselines.fedkseed:FedKSeed")
