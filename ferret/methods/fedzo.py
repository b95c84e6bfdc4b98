"""FedZO: options and registration; implementation (and the options' meaning) in baselines/fedzo.py."""

from __future__ import annotations

from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods._checks import check_choice, check_lr_option, check_positive, check_z_buffer


@dataclass(frozen=True)
class FedZOOptions:
    mu: float = 1e-3
    n_perturb: int = 1
    estimator: str = "central"
    direction: str = "gaussian"
    lr: float = 0.0
    z_buffer: str = "tensor"

    def __post_init__(self) -> None:
        check_lr_option(self.lr)
        check_positive("mu", self.mu)
        check_positive("n_perturb", self.n_perturb, integer=True)
        check_choice("estimator", self.estimator, ("central", "forward"))
        check_choice("direction", self.direction, ("gaussian", "sphere"))
        check_z_buffer(self.z_buffer)


register("fedzo", FedZOOptions, "baselines.fedzo:FedZO")
