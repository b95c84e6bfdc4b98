"""Fused project / rebuild on CUDA: Triton kernels with the bits of :mod:`ferret.projection`.

Every entry is a pure function of (key, index): word w of a basis is splitmix64's finaliser of
``key + (w + 1) * golden`` (wrapping uint64, the same on GPU and CPU). Rademacher: entry 64 w + b
is bit b of the word -> +-1/sqrt(d). Float bases: entry 2 w + i is 32-bit half i of the word ->
22 mantissa bits -> t in (-1/2, 1/2) -> the law's transform. A program owns one tile of words,
reads its tile of x (or of the output) once, and loops over the n seeds, generating each
basis's tile in registers; nothing of size n x d, or n x tile, is ever stored.

Why Triton: the same Python source compiles for CUDA and runs on CPU through Triton's
interpreter (``TRITON_INTERPRET=1``, which must be set before triton is imported; the tests do
that in a subprocess), so the GPU kernel is tested bit for bit against the reference without a
GPU. torch ships no CUDA kernel of its own for a counter hash fused with a GEMV. The CPU path is
:mod:`ferret.kernels.cpu` (a C++ extension; a Triton CPU backend is not part of triton's wheel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from ferret.kernels import float_law

FUSED_BASES = ("rademacher", "uniform", "trunc_normal")
_SIGN_WORDS = 64  # Rademacher tile: 64 words = 4096 entries per program
_FLOAT_WORDS = 1024  # float tile: 1024 words = 2048 entries per program


@triton.jit
def _mix(z):
    """splitmix64's finaliser on uint64 (logical shifts, wrapping multiplies)."""
    z = z ^ (z >> 30)
    z = z * 0xBF58476D1CE4E5B9
    z = z ^ (z >> 27)
    z = z * 0x94D049BB133111EB
    return z ^ (z >> 31)


@triton.jit
def _words(keys_ptr, k, w):
    """Hashes of words w (uint64 tensor) of basis k."""
    key = tl.load(keys_ptr + k).to(tl.uint64, bitcast=True)
    return _mix(key + (w + 1) * 0x9E3779B97F4A7C15)


@triton.jit
def _float_entries(h, KIND: tl.constexpr, scale, beta, CUBIC: tl.constexpr):
    """(W, 2) float entries from (W,) word hashes: half i of word w is entry 2 w + i."""
    half = tl.arange(0, 2).to(tl.uint64)
    bits = ((h[:, None] >> (half[None, :] * 32)) & 0xFFFFFFFF).to(tl.uint32)
    u = ((bits & 0x007FFFFE) | 0x3F800001).to(tl.float32, bitcast=True)
    t = u - 1.5
    if KIND == 1:  # trunc_normal: sqrt2 erfinv(2 m t) to the cubic term (see ferret.projection)
        if CUBIC:
            t = t + beta * (t * t * t)
    return t * scale


@triton.jit
def _sign_project(x_ptr, keys_ptr, part_ptr, d, n, s, W: tl.constexpr):
    tile = tl.program_id(0)
    w = tile * W + tl.arange(0, W).to(tl.int64)
    b = tl.arange(0, 64)
    e = w[:, None] * 64 + b[None, :]
    x = tl.load(x_ptr + e, mask=e < d, other=0.0)
    for k in range(n):
        h = _words(keys_ptr, k, w.to(tl.uint64))
        bit = (h[:, None] >> b[None, :].to(tl.uint64)) & 1
        dot = tl.sum(tl.sum(tl.where(bit != 0, x, -x), axis=1), axis=0)
        tl.store(part_ptr + tile * n + k, dot * s)


@triton.jit
def _sign_rebuild(coef_ptr, keys_ptr, out_ptr, d, n, s, W: tl.constexpr):
    tile = tl.program_id(0)
    w = tile * W + tl.arange(0, W).to(tl.int64)
    b = tl.arange(0, 64)
    e = w[:, None] * 64 + b[None, :]
    y = tl.zeros([W, 64], dtype=tl.float32)
    for k in range(n):
        c = tl.load(coef_ptr + k) * s
        h = _words(keys_ptr, k, w.to(tl.uint64))
        bit = (h[:, None] >> b[None, :].to(tl.uint64)) & 1
        y += tl.where(bit != 0, c, -c)
    mask = e < d
    tl.store(out_ptr + e, tl.load(out_ptr + e, mask=mask, other=0.0) + y, mask=mask)


@triton.jit
def _float_project(x_ptr, keys_ptr, part_ptr, d, n, scale, beta, W: tl.constexpr,
                   KIND: tl.constexpr, CUBIC: tl.constexpr):
    tile = tl.program_id(0)
    w = tile * W + tl.arange(0, W).to(tl.int64)
    e = w[:, None] * 2 + tl.arange(0, 2)[None, :]
    x = tl.load(x_ptr + e, mask=e < d, other=0.0)
    for k in range(n):
        v = _float_entries(_words(keys_ptr, k, w.to(tl.uint64)), KIND, scale, beta, CUBIC)
        tl.store(part_ptr + tile * n + k, tl.sum(tl.sum(v * x, axis=1), axis=0))


@triton.jit
def _float_rebuild(coef_ptr, keys_ptr, out_ptr, d, n, scale, beta, W: tl.constexpr,
                   KIND: tl.constexpr, CUBIC: tl.constexpr):
    tile = tl.program_id(0)
    w = tile * W + tl.arange(0, W).to(tl.int64)
    e = w[:, None] * 2 + tl.arange(0, 2)[None, :]
    y = tl.zeros([W, 2], dtype=tl.float32)
    for k in range(n):
        c = tl.load(coef_ptr + k)
        y += c * _float_entries(_words(keys_ptr, k, w.to(tl.uint64)), KIND, scale, beta, CUBIC)
    mask = e < d
    tl.store(out_ptr + e, tl.load(out_ptr + e, mask=mask, other=0.0) + y, mask=mask)


@triton.jit
def _generate(keys_ptr, out_ptr, d, n, s, scale, beta, W: tl.constexpr, KIND: tl.constexpr,
              CUBIC: tl.constexpr):
    """Write the entries of basis program_id(1) on tile program_id(0) (KIND 2: Rademacher)."""
    tile, k = tl.program_id(0), tl.program_id(1)
    w = tile * W + tl.arange(0, W).to(tl.int64)
    h = _words(keys_ptr, k, w.to(tl.uint64))
    if KIND == 2:
        b = tl.arange(0, 64)
        e = w[:, None] * 64 + b[None, :]
        bit = (h[:, None] >> b[None, :].to(tl.uint64)) & 1
        v = tl.where(bit != 0, s, -s)
    else:
        e = w[:, None] * 2 + tl.arange(0, 2)[None, :]
        v = _float_entries(h, KIND, scale, beta, CUBIC)
    tl.store(out_ptr + k * d + e, v, mask=e < d)


def supports(kind: str, x: torch.Tensor) -> bool:
    """Whether a kernel here covers this basis and tensor (trunc_normal below d = 2048 needs
    torch's erfinv; gaussian needs sin/cos whose last ulp differs between devices)."""
    if x.dtype != torch.float32 or kind not in FUSED_BASES:
        return False
    return kind != "trunc_normal" or x.numel() >= 2048


def _check(kind: str, t: torch.Tensor) -> None:
    if not supports(kind, t):
        raise ValueError(f"no Triton kernel for basis '{kind}' on a {t.dtype} block of {t.numel()}")


# -- what Triton compiles per launch -----------------------------------------------------------------
# Triton compiles one binary per kernel, constexpr values and *specialisation* of the runtime
# arguments: an integer equal to 1 becomes a constant, one divisible by 16 is marked so, and it is
# an i32 or an i64 by range; a pointer is marked when 16-byte aligned (floats are all fp32).
# A run's encode and rebuild therefore compile once per distinct key below, and warm-up
# (ferret.projection.warm_up) launches one call per key so that no compile lands in a timed phase.

def _spec(arg: Any) -> tuple:
    """Triton's specialisation of one runtime argument (tests check it against Triton's own)."""
    if isinstance(arg, torch.Tensor):
        return ("ptr", str(arg.dtype), arg.data_ptr() % 16 == 0)
    if isinstance(arg, bool) or not isinstance(arg, int):
        return (type(arg).__name__,)
    if arg == 1:
        return ("constexpr", 1)
    width = "i32" if -(2**31) <= arg < 2**31 else ("i64" if -(2**63) <= arg < 2**63 else "u64")
    return (width, arg % 16 == 0)


def _key(kernel: Any, args: tuple, constexprs: dict[str, Any]) -> tuple:
    return (kernel.__name__, tuple(_spec(a) for a in args), tuple(sorted(constexprs.items())))


# Called with the compile key of every launch before it happens (None: no hook); tests use it to
# prove that warm-up covers every key a run launches.
launch_hook: Callable[[tuple], None] | None = None


def _launch(kernel: Any, grid: tuple[int, ...], *args: Any, **constexprs: Any) -> None:
    if launch_hook is not None:
        launch_hook(_key(kernel, args, constexprs))
    kernel[grid](*args, **constexprs)


def _aligned(dtype: torch.dtype) -> torch.Tensor:
    """A stand-in for a fresh (16-byte aligned) allocation, for :func:`launch_key`."""
    return torch.empty(4, dtype=dtype)


def launch_key(kind: str, d: int, n: int) -> tuple | None:
    """The compile keys a project and a reconstruct of a block of d with n seeds launch (fresh,
    aligned tensors, as ferret's encode and rebuild pass), or None where the reference path runs."""
    if kind not in FUSED_BASES or (kind == "trunc_normal" and d < 2048):
        return None
    f32, i64 = _aligned(torch.float32), _aligned(torch.int64)
    if kind == "rademacher":
        c = {"W": _SIGN_WORDS}
        return (_key(_sign_project, (f32, i64, f32, d, n, 1.0), c),
                _key(_sign_rebuild, (f32, i64, f32, d, n, 1.0), c))
    code, scale, beta, cubic = float_law(kind, d)
    c = {"W": _FLOAT_WORDS, "KIND": code, "CUBIC": cubic}
    return (_key(_float_project, (f32, i64, f32, d, n, scale, beta), c),
            _key(_float_rebuild, (f32, i64, f32, d, n, scale, beta), c))


def project(x: torch.Tensor, keys: torch.Tensor, kind: str) -> torch.Tensor:
    """Coordinates <x, v_k>, shape (n,): per-tile partial sums, added in tile order in float64."""
    _check(kind, x)
    x, keys = x.contiguous().view(-1), keys.contiguous()
    d, n = x.numel(), keys.numel()
    if kind == "rademacher":
        tiles = triton.cdiv(triton.cdiv(d, 64), _SIGN_WORDS)
        part = torch.empty(tiles, n, dtype=torch.float32, device=x.device)
        _launch(_sign_project, (tiles,), x, keys, part, d, n, 1.0 / math.sqrt(d), W=_SIGN_WORDS)
    else:
        code, scale, beta, cubic = float_law(kind, d)
        tiles = triton.cdiv(triton.cdiv(d, 2), _FLOAT_WORDS)
        part = torch.empty(tiles, n, dtype=torch.float32, device=x.device)
        _launch(_float_project, (tiles,), x, keys, part, d, n, scale, beta, W=_FLOAT_WORDS, KIND=code,
                CUBIC=cubic)
    return part.sum(0, dtype=torch.float64).to(torch.float32)


def reconstruct(coef: torch.Tensor, keys: torch.Tensor, kind: str, out: torch.Tensor) -> torch.Tensor:
    """Add sum_k coef[k] v_k to the contiguous flat float32 `out` in place and return it."""
    _check(kind, out)
    if not out.is_contiguous():
        raise ValueError(f"reconstruct needs a contiguous output, got strides {out.stride()}")
    coef, keys = coef.to(device=out.device, dtype=torch.float32).contiguous(), keys.contiguous()
    d, n = out.numel(), keys.numel()
    if kind == "rademacher":
        tiles = triton.cdiv(triton.cdiv(d, 64), _SIGN_WORDS)
        _launch(_sign_rebuild, (tiles,), coef, keys, out, d, n, 1.0 / math.sqrt(d), W=_SIGN_WORDS)
    else:
        code, scale, beta, cubic = float_law(kind, d)
        tiles = triton.cdiv(triton.cdiv(d, 2), _FLOAT_WORDS)
        _launch(_float_rebuild, (tiles,), coef, keys, out, d, n, scale, beta, W=_FLOAT_WORDS, KIND=code,
                CUBIC=cubic)
    return out


def generate(keys: torch.Tensor, kind: str, d: int) -> torch.Tensor:
    """All n x d entries of the bases, shape (n, d): what the fused kernels compute in registers,
    written out so that it can be compared with :func:`ferret.projection.basis_chunk`."""
    keys = keys.contiguous()
    n = keys.numel()
    out = torch.empty(n, d, dtype=torch.float32, device=keys.device)
    _check(kind, out[0])
    if kind == "rademacher":
        grid = (triton.cdiv(triton.cdiv(d, 64), _SIGN_WORDS), n)
        _launch(_generate, grid, keys, out, d, n, 1.0 / math.sqrt(d), 0.0, 0.0, W=_SIGN_WORDS, KIND=2,
                CUBIC=False)
    else:
        code, scale, beta, cubic = float_law(kind, d)
        grid = (triton.cdiv(triton.cdiv(d, 2), _FLOAT_WORDS), n)
        _launch(_generate, grid, keys, out, d, n, 0.0, scale, beta, W=_FLOAT_WORDS, KIND=code, CUBIC=cubic)
    return out
