"""FedIT (LoRA, AdamW): options and registration; implementation (and the options' meaning) in baselines/fedit.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods._checks import check_fraction, check_lr_option, check_positive

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class FedITOptions:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str = "q_proj,v_proj"
    lr: float = 3e-4

    def __post_init__(self) -> None:
        check_positive("r", self.r, integer=True)
        check_positive("alpha", self.alpha)
        check_fraction("dropout", self.dropout)
        modules = self.modules()
        if not isinstance(self.target_modules, str) or not modules or not all(_MODULE_NAME.match(m) for m in modules):
            raise ValueError(f"target_modules={self.target_modules!r}: must be comma-separated module names, "
                             "e.g. 'q_proj,v_proj'")
        check_lr_option(self.lr)

    def modules(self) -> list[str]:
        if not isinstance(self.target_modules, str):
            return []
        return [m.strip() for m in self.target_modules.split(",") if m.strip()]


register("fedit", FedITOptions, "baselines.fedit:FedIT")
