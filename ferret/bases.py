"""The random bases of the projection and its reference chunk size: names that the projection
(ferret/projection.py) and Ferret's options (ferret/methods/ferret.py) share, importable without torch."""

BASES = ("rademacher", "uniform", "gaussian", "trunc_normal")
DEFAULT_CHUNK = 1 << 22  # entries per reference chunk (16 MiB of float32)
