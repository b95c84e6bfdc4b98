"""Derive every random stream of a run from its one root seed."""

from __future__ import annotations

import hashlib

import torch


def seed64(*parts: object) -> int:
    """A stable 64-bit seed from the root seed and a tag path (never Python's salted hash)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def derive_seed(*parts: object) -> int:
    """:func:`seed64` cut to 63 bits, because torch's manual_seed wants a non-negative int64."""
    return seed64(*parts) & 0x7FFF_FFFF_FFFF_FFFF


def generator(*parts: object) -> torch.Generator:
    """A CPU torch generator seeded from :func:`derive_seed`."""
    g = torch.Generator()
    g.manual_seed(derive_seed(*parts))
    return g
