"""Shared-randomness bases: project a flat update onto n seeded bases and rebuild it.

Ferret (Shu et al., arXiv 2409.06277, Alg. 1) sends, per parameter block of size d, the
coordinates gamma_k = <delta, v_k> of the update on n random bases v_1..v_n that every party can
regenerate from shared seeds; the server rebuilds sum_k c_k v_k. This module does the
generation and the two products on tensors only (it knows nothing of models).

How the bases are generated, and why
------------------------------------
* Two implementations of the products: fused kernels (each entry made in registers and consumed
  at once, no chunk buffer: :mod:`ferret.kernels.cpu` on CPU, :mod:`ferret.kernels.triton` on
  CUDA; Rademacher, uniform, trunc_normal) and the reference path in plain torch ops below
  (every basis, every device; the kernels are tested against it bit for bit). Both use the bits
  described next. The reference is kept plain on purpose: it is the definition the kernels are
  checked against and the fallback where no kernel exists or one fails to build or launch (one
  warning naming the cause, then the reference for the rest of the process), not a fast path
  (the worker threads, reused buffers and look-ahead hashing it once had to be fast are gone
  with the kernels).
* Counter-based, not stateful: every basis entry is a pure function of (seed, block, index):
  splitmix64's finaliser applied to ``key + (w + 1) * golden`` for the 64-bit word w that holds
  the entry, where ``key = mix(mix(seed) ^ mix(block))``. Any chunk of any basis can therefore be
  generated on its own, in any order, on CPU or GPU, with identical integer bits everywhere
  (wrapping 64-bit and 32-bit integer arithmetic is the same on both). A K x d matrix is never
  materialised: the reference walks the block in chunks of ``chunk_elems // n`` columns
  (multiples of 64; seeds in groups where n x 64 would exceed ``chunk_elems``), so the extra
  memory is a few chunk-sized temporaries; both products are fp32 matrix-vector products on the
  chunk (bf16 GEMV is ~7x slower than fp32 on CPU). Blocks the fused kernels do not cover take
  chunks no larger than the block (at least 4096 entries) on the fused path, which keeps that
  path's extra memory about a tile plus d floats (``ferret bench projection``).
* Bits per entry, chosen for speed (the hash, with its two 64-bit multiplies that CPUs do not
  vectorise, costs ~2-5 ns per word on one core; a 32-bit bit operation ~0.05-0.1 ns):
    - ``rademacher``: 64 signs per word. Entry 32 h + j of a word is bit j of its 32-bit half h,
      moved to the float sign bit by one vectorised shift and OR-ed onto the bits of 1/sqrt(d):
      three int32 passes, no float arithmetic, exactly +-1/sqrt(d) (||v|| = 1 exactly).
    - float bases: two entries per word, one per 32-bit half: 22 random mantissa bits and a set
      lowest bit under the exponent of 1.0 give u in [1, 2) on 2^22 levels symmetric about 1.5,
      so t = u - 1.5 has mean exactly 0 (two int32 passes and one float pass).
* Distributions (``kind``), all with mean 0:
    - ``rademacher``: +-1/sqrt(d) (the fast one);
    - ``uniform``: sqrt(3/d) * U(-1, 1), variance 1/d;
    - ``gaussian``: N(0, 1/d) by Box-Muller on the two halves of a word (cos and sin both used;
      transcendentals may differ in the last ulp between CPU and GPU; the integer bits do not);
    - ``trunc_normal``: the official code's basis, ``trunc_normal_(mean=0, std=1, a=-1/sqrt(d),
      b=1/sqrt(d))``, by the inverse-CDF transform torch uses (uniform y on [-m, m],
      m = erf(a / sqrt 2), x = sqrt2 erfinv(y)), fed from the counter stream. For d >= 2048,
      |y| < 0.02 and erfinv's series to the cubic term is exact in float32, so the transform is
      one polynomial (dropped entirely once the cubic term is below half an ulp, d > ~6e6); small
      blocks use torch's erfinv. Its variance is about 1/(3d), not 1/d (see
      :func:`basis_variance`). The official code draws it from ``torch.manual_seed(seed)`` over
      the whole block; we draw the same law chunk-wise from the counter stream, so values differ
      but not their distribution (``ferret bench projection`` checks this against the official loop).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import torch

from ferret.bases import BASES, DEFAULT_CHUNK
from ferret.kernels import cpu as fused_kernels  # CPU kernels; CUDA's are imported on first use

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
_SIGN32 = -(1 << 31)  # int32 with only the sign bit set
_MANTISSA22 = 0x007FFFFE  # 22 random bits above the lowest mantissa bit
_ONE_ODD = 0x3F800001  # exponent of 1.0 and the lowest mantissa bit: u = 1 + odd * 2^-23
_SHIFTS: dict[torch.device, torch.Tensor] = {}


def _xorshift_(z: torch.Tensor, shift: int, mask: int) -> None:
    """z ^= z >>> shift (logical) in place."""
    z ^= torch.bitwise_right_shift(z, shift).bitwise_and_(mask)


def _mix_(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser, in place on a contiguous int64 tensor (wrapping multiplication)."""
    _xorshift_(z, 30, _M34)
    z *= _C1
    _xorshift_(z, 27, _M37)
    z *= _C2
    _xorshift_(z, 31, _M33)
    return z


def stream_keys(seeds: torch.Tensor, block: int) -> torch.Tensor:
    """One 64-bit stream key per seed for the given block: mix(mix(seed) ^ mix(block))."""
    keys = _mix_(seeds.to(torch.int64) + _GOLDEN)
    block_key = _mix_(torch.tensor([block], dtype=torch.int64, device=seeds.device) + _GOLDEN)
    keys ^= block_key
    return _mix_(keys)


def _hashes(keys: torch.Tensor, start: int, count: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Counter hashes h[i, w] = mix(keys[i] + (start + w + 1) * golden), shape (n, count)."""
    counters = torch.arange(start + 1, start + count + 1, dtype=torch.int64, device=keys.device)
    counters *= _GOLDEN
    return _mix_(torch.add(keys[:, None], counters[None, :], out=out))


@functools.lru_cache(maxsize=64)
def _f32_bits(value: float) -> int:
    """The bits of a float32 as an int32 value."""
    return int(torch.tensor([value], dtype=torch.float32).view(torch.int32))


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


def _signs(keys: torch.Tensor, start: int, length: int, d: int) -> torch.Tensor:
    """Rademacher entries [start, start + length): bit j of each 32-bit half -> sign bit."""
    n = keys.shape[0]
    first, last = start // 64, (start + length + 63) // 64
    halves = _hashes(keys, first, last - first).view(torch.int32)  # (n, 2W), little-endian halves
    shifts = _SHIFTS.get(keys.device)
    if shifts is None:
        shifts = _SHIFTS.setdefault(keys.device, 31 - torch.arange(32, dtype=torch.int32, device=keys.device))
    out = torch.bitwise_left_shift(halves[:, :, None], shifts)  # bit j of the half now at bit 31
    out &= _SIGN32
    out ^= _f32_bits(-1.0 / math.sqrt(d))  # bit set -> +1/sqrt(d), clear -> -1/sqrt(d)
    offset = start - 64 * first
    return out.view(n, -1)[:, offset : offset + length].view(torch.float32)


def _centered_uniform(keys: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Entries [start, start + length) as t in (-1/2, 1/2), 2^22 levels, mean exactly 0."""
    first, last = start // 2, (start + length + 1) // 2
    bits = _hashes(keys, first, last - first).view(torch.int32)  # two entries per word
    bits &= _MANTISSA22
    bits |= _ONE_ODD
    t = bits.view(torch.float32).sub_(1.5)
    offset = start - 2 * first
    return t[:, offset : offset + length]


def basis_chunk(kind: str, keys: torch.Tensor, start: int, length: int, d: int) -> torch.Tensor:
    """Entries [start, start + length) of the n bases given by `keys`, shape (n, length), float32."""
    if kind == "rademacher":
        return _signs(keys, start, length, d)
    if kind not in BASES:
        raise ValueError(f"unknown basis '{kind}' (choose from {', '.join(BASES)})")
    n = keys.shape[0]
    if kind == "gaussian":
        # Box-Muller on the pair (u1, u2) of each word: generate whole words, slice after.
        first, stop = start - start % 2, start + length + (start + length) % 2
        pairs = _centered_uniform(keys, first, stop - first).view(n, -1, 2)
        r, theta = pairs[..., 0], pairs[..., 1]
        r.neg_().add_(0.5).log_().mul_(-2.0 / d).sqrt_()  # 0.5 - t in (0, 1): never log(0)
        theta.mul_(2 * math.pi)
        sin = theta.sin()
        theta.cos_().mul_(r)
        r.mul_(sin)
        return pairs.view(n, -1)[:, start - first : start - first + length]
    t = _centered_uniform(keys, start, length)
    if kind == "uniform":
        return t.mul_(2 * math.sqrt(3.0 / d))
    a = _trunc_normal_bounds(d)  # trunc_normal
    m = math.erf(a / math.sqrt(2))  # y = 2 m t is uniform on [-m, m]
    if d < 2048:  # large |y|: the exact transform (torch.nn.init.trunc_normal_'s)
        return t.mul_(2 * m).erfinv_().mul_(math.sqrt(2.0)).clamp_(-a, a)
    # sqrt2 erfinv(y) = sqrt(pi/2) (y + (pi/12) y^3 + O(y^5)); O(y^5) < 1e-8 relative here.
    beta = math.pi / 12 * (2 * m) ** 2  # coefficient of t^3 relative to t
    if beta * 0.25 > 2.0**-25:  # (t * t) * t in one temporary, not two: a chunk less at the peak
        t.add_(t.square().mul_(t), alpha=beta)
    return t.mul_(math.sqrt(math.pi / 2) * 2 * m)


def _chunk_len(n: int, chunk_elems: int) -> int:
    """Columns per chunk so that an (n, cols) chunk holds at most chunk_elems entries (>= 64)."""
    return max(64, (chunk_elems // max(n, 1)) // 64 * 64)


def _chunks(n: int, d: int, chunk_elems: int):
    """(seed rows, start, length) of the reference's chunks: columns as :func:`_chunk_len`, and
    seeds in groups where even 64 columns of all n would exceed chunk_elems (many seeds, small
    chunks), so no chunk holds more than max(chunk_elems, 64) entries."""
    step = _chunk_len(n, chunk_elems)
    group = max(1, min(n, chunk_elems // max(1, min(step, d))))
    for r0 in range(0, n, group):
        for start in range(0, d, step):
            yield slice(r0, min(n, r0 + group)), start, min(step, d - start)




def _triton_kernels() -> ModuleType:
    from ferret.kernels import triton as kernels  # imports triton: CUDA machines only need it

    return kernels


def _cpu_kernels() -> ModuleType:
    fused_kernels.load()  # builds the C++ extension on first use (cached by torch afterwards)
    return fused_kernels


# Device type -> loader of its fused kernels (raises where they cannot be had).
_LOADERS = {"cpu": _cpu_kernels, "cuda": _triton_kernels}
# Device type -> why its fused kernels are off for the rest of the process.
_UNAVAILABLE: dict[str, str] = {}


def _give_up(device_type: str, exc: Exception) -> None:
    """Turn a device's fused kernels off for this process, with the one warning that says why."""
    first = str(exc).strip().splitlines()
    cause = f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")
    _UNAVAILABLE[device_type] = cause
    warnings.warn(f"fused {device_type} kernels unavailable ({cause}); using the reference path from now on",
                  RuntimeWarning, stacklevel=4)


def _kernels(t: torch.Tensor) -> ModuleType | None:
    """The fused kernels for t's device (the C++ extension on CPU, Triton on CUDA), or None: no
    kernels for the device, or loading them failed (no triton, no compiler: one warning, then the
    reference path for the rest of the process)."""
    device_type = t.device.type
    if device_type not in _LOADERS or device_type in _UNAVAILABLE:
        return None
    try:
        return _LOADERS[device_type]()
    except Exception as exc:  # any failure to load means the reference path, said once
        _give_up(device_type, exc)
        return None


def _fused(kernels: ModuleType, op: str, t: torch.Tensor, *args: Any) -> torch.Tensor | None:
    """kernels.op(*args), or None if it failed to compile or launch (then one warning, and the
    reference path for the rest of the process). Compile and launch errors are raised before a
    kernel writes, so an output it was to update in place is untouched. Out of memory is not a
    kernel failure and is raised as it is."""
    try:
        return getattr(kernels, op)(*args)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # a compile or launch error must not end the run
        _give_up(t.device.type, exc)
        return None


def warm_up(kind: str, device: torch.device, sizes: Iterable[int] = (4096,),
            seed_counts: Iterable[int] = (1,)) -> None:
    """Build the fused kernels of ``kind`` for ``device`` and compile every launch a run makes,
    now: the CPU extension compiles on first use (40-50 s) and Triton JIT-compiles once per
    distinct launch key (block size and seed count, as Triton specialises them), so a method
    calls this in its setup with its block sizes and every seed count it may use, and no compile
    lands inside a timed phase. One project and one reconstruct per distinct key (a failure here
    warns once and the run goes on by the reference path)."""
    kernels = _kernels(torch.empty(0, device=device))
    counts = sorted(set(seed_counts))
    seen: set[Any] = set()
    for d in sorted(set(sizes)):
        for n in counts:
            key = kernels.launch_key(kind, d, n) if kernels is not None else None
            if key in seen:
                continue
            seen.add(key)
            x = torch.zeros(d, dtype=torch.float32, device=device)
            keys = stream_keys(torch.zeros(n, dtype=torch.int64, device=device), 0)
            reconstruct(project(x, keys, kind), keys, kind, x)


def generate(kind: str, keys: torch.Tensor, d: int, chunk_elems: int = DEFAULT_CHUNK) -> None:
    """Generate all n x d entries chunk by chunk and discard them: the reference path's floor
    (same chunks, no products), for ``ferret bench projection``."""
    for rows, start, length in _chunks(keys.shape[0], d, chunk_elems):
        basis_chunk(kind, keys[rows], start, length, d)


def _route(t: torch.Tensor, kind: str, fused: bool, chunk_elems: int) -> tuple[ModuleType | None, int]:
    """(the fused kernels to run on t, or None for the reference path; the reference's chunk size).
    Where a device's kernels exist but not for this block (the small trunc_normal blocks,
    gaussian), the reference's chunks are no larger than the block itself (and at least one
    kernel tile, 4096 entries), so that the fused path's extra memory stays about a tile plus d
    floats there too; large blocks keep ``chunk_elems``."""
    kernels = _kernels(t) if fused else None
    if kernels is None:
        return None, chunk_elems
    if kernels.supports(kind, t):
        return kernels, chunk_elems
    return None, min(chunk_elems, max(4096, t.numel()))


def project(x: torch.Tensor, keys: torch.Tensor, kind: str, chunk_elems: int = DEFAULT_CHUNK,
            fused: bool = True) -> torch.Tensor:
    """Coordinates <x, v_k> of a flat float32 vector x on the bases of `keys`, shape (n,): by the
    fused kernel for x's device where one covers the basis, else (or with ``fused=False``) by the
    reference path, chunks of ``chunk_elems`` entries."""
    kernels, chunk_elems = _route(x, kind, fused, chunk_elems)
    if kernels is not None:
        done = _fused(kernels, "project", x, x, keys, kind)
        if done is not None:
            return done
    d = x.numel()
    out = torch.zeros(keys.shape[0], dtype=torch.float32, device=x.device)
    for rows, start, length in _chunks(keys.shape[0], d, chunk_elems):
        out[rows].addmv_(basis_chunk(kind, keys[rows], start, length, d), x[start : start + length])
    return out


def reconstruct(coef: torch.Tensor, keys: torch.Tensor, kind: str, out: torch.Tensor,
                chunk_elems: int = DEFAULT_CHUNK, fused: bool = True) -> torch.Tensor:
    """Add sum_k coef[k] v_k to the flat float32 vector `out` (in place) and return it (fused
    kernel or reference path, as in :func:`project`)."""
    kernels, chunk_elems = _route(out, kind, fused and out.is_contiguous(), chunk_elems)
    if kernels is not None:
        done = _fused(kernels, "reconstruct", out, coef, keys, kind, out)
        if done is not None:
            return done
    d = out.numel()
    for rows, start, length in _chunks(keys.shape[0], d, chunk_elems):
        out[start : start + length].addmv_(basis_chunk(kind, keys[rows], start, length, d).T, coef[rows])
    return out
