"""FedZO: options and registration; implementation (and the options' meaning) in baselines/fedzo.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods._checks import check_lr_option


@dataclass(frozen=True)
class FedZOOptions:
    mu: float = 1e-3
    n_perturb: int = 1
    estimator: str = "central"
    direction: str = "gaussian"
    lr: float = 0.0

    def __post_init__(self) -> None:
        check_lr_option(self.lr)
        if not (isinstance(self.mu, (int, float)) and self.mu > 0 and math.isfinite(self.mu)):
            raise ValueError(f"mu={self.mu!r} must be a finite number > 0")
        if not (isinstance(self.n_perturb, int) and self.n_perturb >= 1):
            raise ValueError(f"n_perturb={self.n_perturb!r} must be an integer >= 1")
        if self.estimator not in ("central", "forward"):
            raise ValueError(f"estimator={self.estimator!r} must be one of central, forward")
        if self.direction not in ("gaussian", "sphere"):
            raise ValueError(f"direction={self.direction!r} must be one of gaussian, sphere")


register("fedzo", FedZOOptions, "baselines.fedzo:FedZO")
