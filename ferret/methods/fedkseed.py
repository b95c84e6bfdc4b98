"""FedKSeed: options and registration; implementation (and the options' meaning) in baselines/fedkseed.py."""

from __future__ import annotations

from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods._checks import check_choice, check_lr_option, check_positive, check_z_buffer


@dataclass(frozen=True)
class FedKSeedOptions:
    eps: float = 5e-4
    downlink: str = "per_round"
    lr: float = 0.0
    z_buffer: str = "tensor"

    def __post_init__(self) -> None:
        check_lr_option(self.lr)
        check_positive("eps", self.eps)
        check_choice("downlink", self.downlink, ("per_round", "merged"))
        check_z_buffer(self.z_buffer)


register("fedkseed", FedKSeedOptions, "baselines.fedkseed:FedKSeed")
