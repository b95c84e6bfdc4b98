"""Option checks that the methods' options classes share (light: no torch). Each raises
ValueError naming the option and its value; the registry turns that into one line of bad input."""

from __future__ import annotations

import math
from collections.abc import Sequence

OPTIMIZERS = ("sgd", "adamw")
Z_BUFFERS = ("tensor", "model")  # baselines/_zeroth_order.py Direction


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: must be one of {', '.join(allowed)}")


def check_number(name: str, value: object) -> None:
    if not _is_number(value):
        raise ValueError(f"{name}={value!r}: must be a finite number")


def check_positive(name: str, value: object, *, integer: bool = False) -> None:
    """A finite number > 0 (``integer``: an integer >= 1)."""
    if integer and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name}={value!r}: must be a positive integer")
    if not (_is_number(value) and value > 0):
        raise ValueError(f"{name}={value!r}: must be a finite number > 0")


def check_fraction(name: str, value: object) -> None:
    """A number in [0, 1) (a dropout, a momentum)."""
    if not (_is_number(value) and 0 <= value < 1):
        raise ValueError(f"{name}={value!r}: must be in [0, 1)")


def check_lr_option(lr: object) -> None:
    """A method's own ``lr`` option: a finite number >= 0, where 0 means the run's ``lr``."""
    if not (_is_number(lr) and lr >= 0):
        raise ValueError(f"lr={lr!r}: must be a finite number >= 0 (0 uses the run's lr)")


def check_optimizer(kind: str) -> None:
    """A peft baseline's local optimizer (baselines/_peft.py ``make_optimizer``)."""
    check_choice("optimizer", kind, OPTIMIZERS)


def check_z_buffer(kind: str) -> None:
    """The zeroth-order baselines' ``z_buffer`` (FedZO, FedKSeed(-Pro))."""
    check_choice("z_buffer", kind, Z_BUFFERS)


def check_virtual_tokens(n: object) -> None:
    """The prompt baselines' ``num_virtual_tokens``."""
    check_positive("num_virtual_tokens", n, integer=True)
