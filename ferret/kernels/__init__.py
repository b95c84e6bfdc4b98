"""Fused shared-randomness kernels: each basis entry is made in registers and consumed at once.

:mod:`ferret.kernels.cpu` (C++ extension) and :mod:`ferret.kernels.triton` (CUDA) compute the
same bits as :mod:`ferret.projection`'s reference path; :func:`float_law` is the one place both
take the float bases' transform from."""

from __future__ import annotations

import math


def float_law(kind: str, d: int) -> tuple[int, float, float, bool]:
    """(kind code, scale, beta, cubic) of ferret.projection's float transforms for a block of d:
    uniform (code 0) is t * scale; trunc_normal (code 1) is (t + beta t^3) * scale, the cubic
    term only while it exceeds half an ulp (beta / 4 > 2^-25)."""
    if kind == "uniform":
        return 0, 2 * math.sqrt(3.0 / d), 0.0, False
    if kind != "trunc_normal":
        raise ValueError(f"no fused float law for basis '{kind}' (uniform, trunc_normal)")
    m = math.erf(1.0 / math.sqrt(d) / math.sqrt(2))
    beta = math.pi / 12 * (2 * m) ** 2
    return 1, math.sqrt(math.pi / 2) * 2 * m, beta, beta * 0.25 > 2.0**-25
