"""Shared-randomness bases: project a flat update onto n seeded bases and rebuild it.

Ferret (Shu et al., arXiv 2409.06277, Alg. 1) sends, per parameter block of size d, the
coordinates gamma_k = <delta, v_k> of the update on n random bases v_1..v_n that every party can
regenerate from shared seeds; the server rebuilds sum_k c_k v_k. This module does the
generation and the two products on tensors only (it knows nothing of models).

How the bases are generated, and why
------------------------------------
* Counter-based, not stateful: entry j of the basis for (seed, block) is a pure function of
  (seed, block, j): splitmix64's finaliser applied to ``key + (j + 1) * golden``, where
  ``key = mix(mix(seed) ^ mix(block))``. Any chunk of any basis can therefore be generated on its
  own, in any order, on CPU or GPU, with identical integer bits everywhere (64-bit integer
  arithmetic wraps identically on both). A K x d matrix is never materialised: `project` and
  `reconstruct` walk the block in chunks of ``chunk_elems // n`` columns (multiples of 64), so the
  extra memory is O(n x chunk), and both products are matrix-vector products on the chunk.
* Distributions (``kind``), all with mean 0:
    - ``rademacher``: +-1/sqrt(d), 64 signs per hash (the fast one; ||v|| = 1 exactly);
    - ``uniform``: sqrt(3) * U(-1, 1) / sqrt(d), variance 1/d;
    - ``gaussian``: N(0, 1/d) by Box-Muller (transcendentals may differ in the last ulp
      between CPU and GPU; the integer stream does not);
    - ``trunc_normal``: the official code's basis, ``trunc_normal_(mean=0, std=1, a=-1/sqrt(d),
      b=1/sqrt(d))``, by the same inverse-CDF transform torch uses, fed from the counter stream.
      Its variance is about 1/(3d), not 1/d (see :func:`basis_variance`). The official code
      draws it from ``torch.manual_seed(seed)`` over the whole block; we draw the same
      distribution chunk-wise from the counter stream, so values differ but not their law.
"""

from __future__ import annotations

import math

import torch

BASES = ("rademacher", "uniform", "gaussian", "trunc_normal")

_U64 = 1 << 64


def _s64(x: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits."""
    x %= _U64
    return x - _U64 if x >= (1 << 63) else x


_GOLDEN = _s64(0x9E3779B97F4A7C15)
_C1 = _s64(0xBF58476D1CE4E5B9)
_C2 = _s64(0x94D049BB133111EB)
# torch's >> on int64 is arithmetic; masking the sign-extended bits makes it logical.
_M34, _M37, _M33 = (1 << 34) - 1, (1 << 37) - 1, (1 << 33) - 1
_BIT_SHIFTS: dict[torch.device, torch.Tensor] = {}


def _mix_(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser, in place on an int64 tensor (wrapping multiplication)."""
    z ^= (z >> 30) & _M34
    z *= _C1
    z ^= (z >> 27) & _M37
    z *= _C2
    z ^= (z >> 31) & _M33
    return z


def stream_keys(seeds: torch.Tensor, block: int) -> torch.Tensor:
    """One 64-bit stream key per seed for the given block: mix(mix(seed) ^ mix(block))."""
    keys = _mix_(seeds.to(torch.int64) + _GOLDEN)
    block_key = _mix_(torch.tensor([block], dtype=torch.int64, device=seeds.device) + _GOLDEN)
    keys ^= block_key
    return _mix_(keys)


def _hashes(keys: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """Counter hashes h[i, j] = mix(keys[i] + (start + j + 1) * golden), shape (n, count)."""
    counters = torch.arange(start + 1, start + count + 1, dtype=torch.int64, device=keys.device)
    counters *= _GOLDEN
    return _mix_(keys[:, None] + counters[None, :])


def _unit_uniform(h: torch.Tensor, shift: int) -> torch.Tensor:
    """24 bits of each hash as float32 in (0, 1), never exactly 0 (log-safe)."""
    return (((h >> shift) & ((1 << 24) - 1)).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def _trunc_normal_bounds(d: int) -> float:
    return 1.0 / math.sqrt(d)


def basis_variance(kind: str, d: int) -> float:
    """Variance of one basis entry for a block of size d (E[v v^T] = variance * I)."""
    if kind in ("rademacher", "uniform", "gaussian"):
        return 1.0 / d
    if kind == "trunc_normal":
        # Standard normal truncated to [-a, a]: 1 - 2 a phi(a) / (2 Phi(a) - 1).
        a = _trunc_normal_bounds(d)
        phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        mass = math.erf(a / math.sqrt(2))
        return 1.0 - 2 * a * phi / mass
    raise ValueError(f"unknown basis '{kind}' (choose from {', '.join(BASES)})")


def basis_chunk(kind: str, keys: torch.Tensor, start: int, length: int, d: int) -> torch.Tensor:
    """Entries [start, start + length) of the n bases given by `keys`, shape (n, length), float32."""
    n = keys.shape[0]
    if kind == "rademacher":
        # One 64-bit hash gives 64 signs; chunks start on multiples of 64 (see `_chunk_len`).
        first_word, last_word = start // 64, (start + length + 63) // 64
        words = _hashes(keys, first_word, last_word - first_word)  # (n, W) int64
        shifts = _BIT_SHIFTS.get(keys.device)
        if shifts is None:
            shifts = _BIT_SHIFTS.setdefault(keys.device, torch.arange(8, dtype=torch.uint8, device=keys.device))
        # Little-endian bytes on every torch device: bit b of byte B is sign 8 B + b.
        bits = (words.view(torch.uint8)[:, :, None] >> shifts) & 1  # (n, 8W, 8)
        offset = start - 64 * first_word
        bits = bits.reshape(n, -1)[:, offset : offset + length]
        scale = 1.0 / math.sqrt(d)
        return bits.to(torch.float32).mul_(2 * scale).sub_(scale)
    h = _hashes(keys, start, length)
    if kind == "uniform":
        u = _unit_uniform(h, 40)
        return u.mul_(2 * math.sqrt(3.0 / d)).sub_(math.sqrt(3.0 / d))
    if kind == "gaussian":
        u1, u2 = _unit_uniform(h, 40), _unit_uniform(h, 16)
        return u1.log_().mul_(-2.0 / d).sqrt_().mul_(torch.cos(u2.mul_(2 * math.pi)))
    if kind == "trunc_normal":
        # torch.nn.init.trunc_normal_'s transform: uniform on [2 Phi(a) - 1, 2 Phi(b) - 1], erfinv.
        a = _trunc_normal_bounds(d)
        lo = math.erf(-a / math.sqrt(2))
        u = _unit_uniform(h, 40).mul_(-2 * lo).add_(lo)
        return u.erfinv_().mul_(math.sqrt(2.0)).clamp_(-a, a)
    raise ValueError(f"unknown basis '{kind}' (choose from {', '.join(BASES)})")


def _chunk_len(n: int, chunk_elems: int) -> int:
    """Columns per chunk so that an (n, cols) chunk holds at most chunk_elems entries (>= 64)."""
    return max(64, (chunk_elems // max(n, 1)) // 64 * 64)


def project(x: torch.Tensor, keys: torch.Tensor, kind: str, chunk_elems: int = 1 << 22) -> torch.Tensor:
    """Coordinates <x, v_k> of a flat float32 vector x on the bases of `keys`, shape (n,)."""
    d = x.numel()
    out = torch.zeros(keys.shape[0], dtype=torch.float32, device=x.device)
    step = _chunk_len(keys.shape[0], chunk_elems)
    for start in range(0, d, step):
        length = min(step, d - start)
        out.addmv_(basis_chunk(kind, keys, start, length, d), x[start : start + length])
    return out


def reconstruct(coef: torch.Tensor, keys: torch.Tensor, kind: str, out: torch.Tensor,
                chunk_elems: int = 1 << 22) -> torch.Tensor:
    """Add sum_k coef[k] v_k to the flat float32 vector `out` (in place) and return it."""
    d = out.numel()
    step = _chunk_len(keys.shape[0], chunk_elems)
    for start in range(0, d, step):
        length = min(step, d - start)
        out[start : start + length].addmv_(basis_chunk(kind, keys, start, length, d).T, coef)
    return out
