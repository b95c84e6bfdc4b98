"""Ferret (the paper's method): options and registration; implementation in ferret/algorithms/ferret.py."""

from __future__ import annotations

from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.bases import BASES, DEFAULT_CHUNK
from ferret.methods._checks import check_choice, check_fraction, check_positive


@dataclass(frozen=True)
class FerretOptions:
    basis: str = "rademacher"
    scaling: str = "official"
    seed_allocation: str = "norm"
    seeds: str = "fixed"
    block_factor: float = 0.9
    clip_norm: float = 10.0
    slr_schedule: str = "none"
    slr_min: float = 0.0
    server_momentum: float = 0.0
    chunk_elems: int = DEFAULT_CHUNK  # entries per generated chunk (ferret bench projection)

    def __post_init__(self) -> None:
        choices = {
            "basis": BASES,
            "scaling": ("official", "unbiased"),
            "seed_allocation": ("norm", "all"),
            "seeds": ("fixed", "per_round"),
            "slr_schedule": ("none", "linear", "cosine"),
        }
        for key, allowed in choices.items():
            check_choice(key, getattr(self, key), allowed)
        check_positive("block_factor", self.block_factor)
        check_fraction("server_momentum", self.server_momentum)
        if self.chunk_elems < 64:
            raise ValueError(f"chunk_elems={self.chunk_elems!r} must be >= 64")


register("ferret", FerretOptions, "ferret.algorithms.ferret:Ferret")
