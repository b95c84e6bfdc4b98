"""Timing and peak-extra-memory measurement for the benchmarks, in one process.

Peak extra memory on CPU is an RSS delta: glibc's free lists are returned to the kernel
(``malloc_trim(0)``) and the kernel's resident high-water mark is reset (``/proc/self/clear_refs``
``5``, Linux >= 4.0), then ``VmHWM - VmRSS(before)`` is read after the measured call, less the
growth of file-backed pages (``RssFile``: library code paged in on a kernel's first use is not
extra memory). tracemalloc does not see torch's allocations, which is why. The bench commands
first pin glibc to one malloc arena (:func:`single_arena`): with a second torch thread, glibc
gives it its own arena, whose reservations made the same code's RSS delta vary from 5 to 45 MiB
between identical calls (measured at d = 1e5, K = 256); with one arena it is the allocations'.
On CUDA it is ``torch.cuda.max_memory_allocated`` minus the memory allocated before. Where neither
works the peak is NaN.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in {_STATUS}")


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the delta may then under-count
        pass


def single_arena() -> bool:
    """mallopt(M_ARENA_MAX, 1): every thread allocates from the main arena (glibc only; call it
    before torch starts its worker threads). Returns whether it took effect."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, 1))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_measured(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, float]:
    """Call fn once: (its result, wall seconds, peak extra memory in MiB or NaN)."""
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _trim()
        try:
            _CLEAR_REFS.write_text("5")
            before, file_before = _status_kib("VmRSS"), _status_kib("RssFile")
        except OSError:
            before = None
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        file_growth = max(0, _status_kib("RssFile") - file_before) if before is not None else 0
        peak = (_status_kib("VmHWM") - before - file_growth) / 1024 if before is not None else math.nan
    return out, seconds, peak


def best_seconds(fn: Callable[[], Any], device: torch.device, repeats: int = 3) -> float:
    """The fastest of a few calls (for short operations such as one memory pass)."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def reset_peak(device: torch.device) -> None:
    """Start a peak-memory window: CUDA's allocator peak, or (CPU) the process's resident high-water
    mark, after returning glibc's free lists so that freed memory of earlier work is not counted."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    _trim()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:  # no /proc or an old kernel: the high-water mark is then the process's lifetime one
        pass


def peak_since_reset_mb(device: torch.device) -> float:
    """Absolute peak memory in MiB since :func:`reset_peak`: allocated CUDA memory, or the CPU
    process's resident high-water mark (VmHWM; NaN where /proc is missing)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        return _status_kib("VmHWM") / 1024
    except OSError:
        return math.nan


def memory_now_mb(device: torch.device) -> float:
    """Memory in use now in MiB: allocated CUDA memory, or the CPU process's resident set (VmRSS)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        return _status_kib("VmRSS") / 1024
    except OSError:
        return math.nan
