"""The GPU half of :mod:`ferret.bench.floor`: the same shift / xor / add chain as a Triton kernel
on enough programs to fill the device (kept apart so that CPU runs never import triton)."""

from __future__ import annotations

import time

import torch
import triton
import triton.language as tl

_BLOCK = 1024
_PROGRAMS_PER_SM = 8


@triton.jit
def _chain(out_ptr, iters, B: tl.constexpr):
    offs = tl.program_id(0) * B + tl.arange(0, B)
    v = offs.to(tl.uint32) * 2654435761
    for _ in range(iters):
        v = (v ^ (v >> 3)) + 0x9E3779B9
    tl.store(out_ptr + offs, v)  # stored so that the chain is not dropped


def rate(device: torch.device, iters: int, ops_per_step: int, programs: int | None = None) -> float:
    """Lane ops per second of the chain on `device` (CUDA, or CPU under TRITON_INTERPRET=1)."""
    if programs is None:
        programs = _PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    out = torch.empty(programs * _BLOCK, dtype=torch.int32, device=device)
    _chain[(programs,)](out, 1, B=_BLOCK)  # compile
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    sync(device)
    start = time.perf_counter()
    _chain[(programs,)](out, iters, B=_BLOCK)
    sync(device)
    return programs * _BLOCK * iters * ops_per_step / (time.perf_counter() - start)
