"""FedIT-SGD (LoRA, SGD): options and registration; implementation in baselines/fedit_sgd.py."""

from __future__ import annotations

from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods.fedit import FedITOptions


@dataclass(frozen=True)
class FedITSGDOptions(FedITOptions):
    lr: float = 0.0


register("fedit-sgd", FedITSGDOptions, "baselines.fedit_sgd:FedITSGD")
