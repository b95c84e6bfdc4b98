"""The arithmetic floor of project / rebuild: the time the arithmetic of generating K x d basis
entries takes at the device's measured peak 32-bit lane-op rate, without storing any of them.

Derivation (lane ops: one 32-bit integer or float operation on one SIMD / GPU lane):
* hashing: one splitmix64 per 64-bit word (counter add and multiply, key add, 3 shifts, 3 xors,
  2 multiplies = 11 64-bit ops), counted as 2 lane ops each (a 64-bit lane is two 32-bit lanes
  wide; 64-bit multiplies are dearer still, so this is a lower bound) = 22 lane ops per word;
  a word holds 64 Rademacher entries or 2 float entries.
* per entry, the least work that turns its bits into the product's term, on an ISA with a
  three-input logic op (AVX-512's vpternlogd, a GPU's LOP3):
  Rademacher: shift the bit to the sign position, merge it into x's (or the coefficient's) sign
  (mask and xor in one logic op), add = 3;
  float bases: mantissa bits into [1, 2) (and + or in one logic op), u * scale - 1.5 * scale
  (one multiply-add), the product's multiply-add = 3, plus 3 (two multiplies and a multiply-add)
  for trunc_normal's cubic term where it is kept. Without such an op each merge costs 2, so the
  floor is then lower than the true one (still a floor).
* floor seconds = max(one read of the d floats at the measured memory rate,
  K d (per-entry ops + hash ops / entries per word) / peak lane-op rate).
The peak rate comes from :func:`lane_op_rate`: a chain of shift / xor / add on values held in
registers (no memory traffic), on one CPU thread scaled by the thread count (8-lane vectors, as
gcc vectorises the kernels; see :func:`_cpu_rate` for why one thread) or on enough GPU programs
to fill the device.
"""

from __future__ import annotations

import functools
import time

import torch

from ferret.kernels import float_law

_HASH_LANE_OPS = 22
_OPS_PER_STEP = 3  # shift, xor, add in the microbench's chain

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cstdint>
// 12 independent chains of 8 uint32 lanes per thread in named vector variables (gcc vector
// extensions), so they stay in registers: a plain array of chains went through the stack and
// measured half the rate. The result is returned so that the compiler cannot drop the work.
typedef uint32_t v8 __attribute__((vector_size(32)));
#define STEP(x) x = (x ^ (x >> 3)) + 0x9E3779B9u;
int64_t chain(int64_t iters) {
  const int64_t threads = at::get_num_threads();
  std::vector<uint64_t> sums(threads, 0);
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      v8 a[12];
      for (int j = 0; j < 12; ++j) for (int l = 0; l < 8; ++l) a[j][l] = (uint32_t)(t * 96 + j * 8 + l);
      v8 a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5];
      v8 a6 = a[6], a7 = a[7], a8 = a[8], a9 = a[9], a10 = a[10], a11 = a[11];
      for (int64_t i = 0; i < iters; ++i) {
        STEP(a0) STEP(a1) STEP(a2) STEP(a3) STEP(a4) STEP(a5) STEP(a6) STEP(a7) STEP(a8) STEP(a9) STEP(a10) STEP(a11)
      }
      v8 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
      uint64_t total = 0;
      for (int l = 0; l < 8; ++l) total += s[l];
      sums[t] = total;
    }
  });
  uint64_t s = 0;
  for (auto x : sums) s += x;
  return (int64_t)(s & 0x7fffffff);
}
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("chain", &chain); }
"""
_LANES_PER_THREAD = 96  # 12 chains x 8 lanes in the source above


@functools.lru_cache(maxsize=1)
def _cpu_module():
    from torch.utils.cpp_extension import load_inline

    return load_inline("ferret_bench_floor", cpp_sources=[_SOURCE], functions=None,
                       extra_cflags=["-O3", "-march=native", "-fopenmp"],  # as the kernels
                       extra_ldflags=["-fopenmp"])


def ops_per_entry(kind: str, d: int) -> float:
    """Lane ops to generate and use one entry of a basis for a block of d (see the module text)."""
    if kind == "rademacher":
        return 3 + _HASH_LANE_OPS / 64
    cubic = float_law(kind, d)[3]
    return 3 + (3 if cubic else 0) + _HASH_LANE_OPS / 2


def _cpu_rate(iters: int) -> float:
    """One thread's rate times the thread count. On a shared machine a run on every thread at
    once measured anything from 82 to 164 G lane ops/s on the same 2 cores (another process took
    one thread's core), and the floor moved with it; one thread's best run is disturbed far less,
    and scaling it by the threads gives the idle machine's rate (an overestimate where threads
    share a physical core, which only lowers the floor: it stays a floor)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _cpu_module().chain(16)  # load and warm up
        t0 = time.perf_counter()
        _cpu_module().chain(iters)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return threads * _LANES_PER_THREAD * iters * _OPS_PER_STEP / seconds


def _cuda_rate(device: torch.device, iters: int) -> float:
    from ferret.bench import floor_triton

    return floor_triton.rate(device, iters, _OPS_PER_STEP)


def lane_op_rate(device: torch.device, iters: int = 20_000_000) -> float:
    """Measured peak 32-bit lane ops per second of `device` (the best of five runs: interference
    only ever slows a run down)."""
    measure = _cpu_rate if device.type == "cpu" else functools.partial(_cuda_rate, device)
    return max(measure(iters) for _ in range(5))


def floor_seconds(kind: str, d: int, K: int, rate: float, mem_read_s: float) -> float:
    """The floor of one pass (project or rebuild) over a block of d with K bases."""
    return max(mem_read_s, K * d * ops_per_entry(kind, d) / rate)
