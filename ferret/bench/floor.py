"""The arithmetic floor of project / rebuild: the time the arithmetic of generating K x d basis
entries takes at the device's measured peak 32-bit lane-op rate, without storing any of them.

Derivation (lane ops: one 32-bit integer or float operation on one SIMD / GPU lane):
* hashing: one splitmix64 per 64-bit word (counter add and multiply, key add, 3 shifts, 3 xors,
  2 multiplies = 11 64-bit ops), counted as 2 lane ops each (a 64-bit lane is two 32-bit lanes
  wide; 64-bit multiplies are dearer still, so this is a lower bound) = 22 lane ops per word;
  a word holds 64 Rademacher entries or 2 float entries.
* per entry, the least work that turns its bits into the product's term:
  Rademacher: shift the bit to the sign, mask it, xor it onto x (or the coefficient), add = 4;
  float bases: and, or (mantissa into [1, 2)), subtract 1.5, scale, multiply-add = 5, plus 3
  (two multiplies and a multiply-add) for trunc_normal's cubic term where it is kept.
* floor seconds = max(one read of the d floats at the measured memory rate,
  K d (per-entry ops + hash ops / entries per word) / peak lane-op rate).
The peak rate comes from :func:`lane_op_rate`: a chain of shift / xor / add on values held in
registers (no memory traffic), on every CPU thread or on enough GPU programs to fill the device.
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
// 256 independent uint32 chains per thread, 64 at a time (vectorised, held in registers);
// the result is returned so that the compiler cannot drop the work.
int64_t chain(int64_t iters) {
  const int64_t threads = at::get_num_threads();
  std::vector<uint64_t> sums(threads, 0);
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      uint64_t s = 0;
      for (int b = 0; b < 4; ++b) {  // 64 chains at a time: few enough to stay in registers
        uint32_t v[64];
        for (int j = 0; j < 64; ++j) v[j] = (uint32_t)((64 * b + j) * 2654435761u + t);
        for (int64_t i = 0; i < iters / 4; ++i) {
#pragma GCC unroll 64
          for (int j = 0; j < 64; ++j) v[j] = (v[j] ^ (v[j] >> 3)) + 0x9E3779B9u;
        }
        for (int j = 0; j < 64; ++j) s += v[j];
      }
      sums[t] = s;
    }
  });
  uint64_t s = 0;
  for (auto x : sums) s += x;
  return (int64_t)(s & 0x7fffffff);
}
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("chain", &chain); }
"""


@functools.lru_cache(maxsize=1)
def _cpu_module():
    from torch.utils.cpp_extension import load_inline

    return load_inline("ferret_bench_floor", cpp_sources=[_SOURCE], functions=None,
                       extra_cflags=["-O3", "-march=native", "-fopenmp"],  # as the kernels
                       extra_ldflags=["-fopenmp"])


def ops_per_entry(kind: str, d: int) -> float:
    """Lane ops to generate and use one entry of a basis for a block of d (see the module text)."""
    if kind == "rademacher":
        return 4 + _HASH_LANE_OPS / 64
    cubic = float_law(kind, d)[3]
    return 5 + (3 if cubic else 0) + _HASH_LANE_OPS / 2


def _cpu_rate(iters: int) -> float:
    threads = torch.get_num_threads()
    _cpu_module().chain(16)  # load and warm up
    t0 = time.perf_counter()
    _cpu_module().chain(iters)
    return threads * 256 * (iters // 4 * 4) * _OPS_PER_STEP / (time.perf_counter() - t0)


def _cuda_rate(device: torch.device, iters: int) -> float:
    from ferret.bench import floor_triton

    return floor_triton.rate(device, iters, _OPS_PER_STEP)


def lane_op_rate(device: torch.device, iters: int = 4_000_000) -> float:
    """Measured peak 32-bit lane ops per second of `device` (the best of three runs)."""
    measure = _cpu_rate if device.type == "cpu" else functools.partial(_cuda_rate, device)
    return max(measure(iters) for _ in range(3))


def floor_seconds(kind: str, d: int, K: int, rate: float, mem_read_s: float) -> float:
    """The floor of one pass (project or rebuild) over a block of d with K bases."""
    return max(mem_read_s, K * d * ops_per_entry(kind, d) / rate)
