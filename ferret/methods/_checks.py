"""Option checks that several methods share (light: no torch)."""

from __future__ import annotations

import math

OPTIMIZERS = ("sgd", "adamw")


def check_lr_option(lr: object) -> None:
    """A method's own ``lr`` option: a finite number >= 0, where 0 means the run's ``lr``."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"lr={lr!r}: must be a finite number >= 0 (0 uses the run's lr)")


def check_optimizer(kind: str) -> None:
    """A peft baseline's local optimizer (baselines/_peft.py ``make_optimizer``)."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer={kind!r}: must be one of {', '.join(OPTIMIZERS)}")


def check_virtual_tokens(n: object) -> None:
    """The prompt baselines' ``num_virtual_tokens``."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"num_virtual_tokens={n!r}: must be a positive integer")
