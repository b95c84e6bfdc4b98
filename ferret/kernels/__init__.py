"""Fused shared-randomness kernels: each basis entry is made in registers and consumed at once."""
