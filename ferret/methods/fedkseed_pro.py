"""FedKSeed-Pro: options and registration; implementation in baselines/fedkseed.py."""

from __future__ import annotations

from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods._checks import check_number, check_positive
from ferret.methods.fedkseed import FedKSeedOptions


@dataclass(frozen=True)
class FedKSeedProOptions(FedKSeedOptions):
    bias_loss_clip: float = 1000.0
    grad_initial: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("bias_loss_clip", self.bias_loss_clip)
        check_number("grad_initial", self.grad_initial)


register("fedkseed-pro", FedKSeedProOptions, "baselines.fedkseed:FedKSeedPro")
