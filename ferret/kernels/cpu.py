"""Fused project / rebuild on CPU: a small C++ extension (torch.utils.cpp_extension).

Every entry of the n bases is generated from (key, index) with the same counter-based bits as
:mod:`ferret.projection` (splitmix64 of ``key + (w + 1) * golden``; Rademacher: bit j of the
word's 32-bit half -> sign; float bases: 22 mantissa bits of each half -> t in (-1/2, 1/2)) and
used at once in the dot product (project) or the axpy (rebuild). The block is walked in tiles of
``_TILE_WORDS`` 64-bit words (4096 floats, 16 KiB, L1-resident); a tile of x (or of the output)
is read once for all n seeds, so no n x chunk buffer exists and the extra memory is one tile per
thread (plus n doubles per part for project's partial sums).

Why a C++ extension and not the alternatives (2 cores; the torch.compile and numba figures are
the issue author's, not re-measured here):
* torch.compile (inductor): 11.8 G entries/s for a Rademacher project, but a first-call compile
  per shape family (its cost was not measured here) and no control over keeping a tile of the
  update in L1 across a block's seeds;
* numba: 3.3 G entries/s naive, and a new dependency;
* C++ with gcc (present wherever torch's CPU wheel builds extensions) compiles once per source
  text (cached under torch's extension directory; 40-50 s the first time on the loaded
  machine), is written so that gcc vectorises every inner loop (independent lane accumulators,
  ``-O3 -march=native``; gcc's ``-fopt-info-vec`` report lists the hash, sign-expansion,
  float-generation, dot and axpy loops as vectorised, 64-byte vectors on AVX-512),
  and parallelises with torch's own ``at::parallel_for`` (no worker threads of our own). Summation order is fixed
  (parts of the block are summed in order), so results do not depend on the thread count.
The GPU counterpart is :mod:`ferret.kernels.triton`; on other devices and where the extension
cannot be built, :mod:`ferret.projection` uses its reference path.
"""

from __future__ import annotations

import functools
import math
import threading

import torch

from ferret.kernels import float_law

_TILE_WORDS = 64  # 4096 entries (Rademacher) per tile: x tile 16 KiB, stays in L1 across seeds
_FLOAT_TILE_WORDS = 1024  # 2048 float entries: x tile + its hashed 32-bit halves, 16 KiB
_PARTS = 64  # fixed partition of the block for project's partial sums (thread-count independent)

# The C++ source: the constants line is formatted in, the rest is raw text (its braces are C++).
_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cstdint>
#include <cstring>
#include <cmath>

static const uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL, C1 = 0xBF58476D1CE4E5B9ULL, C2 = 0x94D049BB133111EBULL;
""" + (
    f"static const int64_t TILE = {_TILE_WORDS}, FTILE = {_FLOAT_TILE_WORDS}, PARTS = {_PARTS};\n"
    "\n"
    "// partition of a block into parts: fixed by d (not the thread count), few for small blocks\n"
    "static inline int64_t n_parts(int64_t words, int64_t tile) "
    "{ return std::max<int64_t>(1, std::min<int64_t>(PARTS, words / (4 * tile))); }\n"
    "// below ~1M entries of work a call runs on the calling thread (thread start-up would dominate)\n"
    "static inline int64_t grain(int64_t items, int64_t n, int64_t d) "
    "{ return n * d < (1 << 20) ? std::max<int64_t>(items, 1) : 1; }\n"
    "\n"
) + r"""static inline uint64_t mix(uint64_t z) {
  z ^= z >> 30; z *= C1; z ^= z >> 27; z *= C2; z ^= z >> 31; return z;
}

static inline void hash_tile(uint64_t key, int64_t w0, int64_t nw, uint64_t* h) {
  for (int64_t i = 0; i < nw; ++i) h[i] = mix(key + (uint64_t)(w0 + i + 1) * GOLDEN);
}

static inline uint32_t fbits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static inline float bitsf(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// acc[j] += sign_j x_j over the 32 entries of one 32-bit half (bit j set -> +, clear -> -).
// The sign bit is (~half << (31 - j)) & 0x80000000: one variable shift and one three-input logic
// op per entry (with the xor), where (~(half >> j) & 1) << 31 took 1.4-1.5x as long, same bits.
static inline void half_dot(uint32_t half, const float* x, float* acc) {
  for (int j = 0; j < 32; ++j) acc[j] += bitsf(fbits(x[j]) ^ ((~half << (31 - j)) & 0x80000000u));
}

static inline float lanes_sum(const float* acc, int m) {  // fixed pairwise order
  float s[16];
  for (int l = 0; l < 16; ++l) s[l] = 0;
  for (int j = 0; j < m; ++j) s[j & 15] += acc[j];
  for (int w = 8; w >= 1; w /= 2) for (int l = 0; l < w; ++l) s[l] += s[l + w];
  return s[0];
}

static inline void half_axpy(uint32_t half, uint32_t cbits, float* y) {
  for (int j = 0; j < 32; ++j) y[j] += bitsf(cbits ^ ((~half << (31 - j)) & 0x80000000u));
}

// float bases: entry e of the stream is half (e & 1) of word e >> 1
// uniform: t * scale; trunc_normal: (t + beta t^3) * scale (ferret.kernels.float_law, less its
// kind code: only whether the cubic term is kept matters here)
struct FloatLaw { float scale, beta; bool cubic; };

static inline float entry(uint32_t half, float scale, float beta, bool cubic) {
  float t = bitsf((half & 0x007FFFFEu) | 0x3F800001u) - 1.5f;
  if (cubic) { float c = (t * t) * t; t = std::fma(beta, c, t); }
  return t * scale;
}

// the tile's words as 32-bit halves (entry e = half e): gcc vectorises this loop and the
// generation loops below over 16 lanes; generating both halves of each uint64 word in one
// iteration instead kept that loop scalar (1.0-1.1 G entries/s per thread, 3.3x slower)
static inline void hash_halves(uint64_t key, int64_t w0, int64_t nw, uint32_t* hw) {
  for (int64_t i = 0; i < nw; ++i) {
    const uint64_t z = mix(key + (uint64_t)(w0 + i + 1) * GOLDEN);
    hw[2 * i] = (uint32_t)z; hw[2 * i + 1] = (uint32_t)(z >> 32);
  }
}

// acc[l] += v_e x_e over m entries (m a multiple of 16), the law's branch outside the loop
template <bool CUBIC>
static inline void float_dot(const uint32_t* hw, const float* x, int64_t m, float scale, float beta, float* acc) {
  for (int64_t e = 0; e < m; e += 16)
    for (int l = 0; l < 16; ++l) acc[l] += entry(hw[e + l], scale, beta, CUBIC) * x[e + l];
}

template <bool CUBIC>
static inline void float_axpy(const uint32_t* hw, float c, int64_t m, float scale, float beta, float* y) {
  for (int64_t e = 0; e < m; ++e) y[e] += c * entry(hw[e], scale, beta, CUBIC);
}

// Rademacher project: (n,) float64 partials summed in part order
torch::Tensor rademacher_project(torch::Tensor x, torch::Tensor keys, double s) {
  const int64_t d = x.numel(), n = keys.numel(), words = (d + 63) / 64;
  const float* xp = x.data_ptr<float>();
  const uint64_t* kp = (const uint64_t*)keys.data_ptr<int64_t>();
  const int64_t parts = n_parts(words, TILE);
  auto partial = torch::zeros({parts, n}, torch::kFloat64);
  double* pp = partial.data_ptr<double>();
  const int64_t per = (words + parts - 1) / parts;
  at::parallel_for(0, parts, grain(parts, n, d), [&](int64_t p0, int64_t p1) {
    uint64_t h[TILE]; float xt[TILE * 64];
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t wa = p * per, wb = std::min(words, wa + per);
      for (int64_t w0 = wa; w0 < wb; w0 += TILE) {
        const int64_t nw = std::min(TILE, wb - w0), e0 = w0 * 64, ne = std::min(d - e0, nw * 64);
        const float* xs = xp + e0;
        if (ne < nw * 64) { std::memcpy(xt, xs, ne * 4); std::memset(xt + ne, 0, (nw * 64 - ne) * 4); xs = xt; }
        for (int64_t k = 0; k < n; ++k) {
          hash_tile(kp[k], w0, nw, h);
          float acc[64];
          for (int j = 0; j < 64; ++j) acc[j] = 0;
          for (int64_t i = 0; i < nw; ++i) {
            half_dot((uint32_t)h[i], xs + 64 * i, acc);
            half_dot((uint32_t)(h[i] >> 32), xs + 64 * i + 32, acc + 32);
          }
          pp[p * n + k] += lanes_sum(acc, 64);
        }
      }
    }
  });
  return partial.sum(0).mul_(s).to(torch::kFloat32);
}

void rademacher_rebuild(torch::Tensor coef, torch::Tensor keys, double s, torch::Tensor out) {
  const int64_t d = out.numel(), n = keys.numel(), words = (d + 63) / 64;
  float* op = out.data_ptr<float>();
  const float* cp = coef.data_ptr<float>();
  const uint64_t* kp = (const uint64_t*)keys.data_ptr<int64_t>();
  const int64_t tiles = (words + TILE - 1) / TILE;
  at::parallel_for(0, tiles, grain(tiles, n, d), [&](int64_t t0, int64_t t1) {
    uint64_t h[TILE]; float y[TILE * 64];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t w0 = t * TILE, nw = std::min(TILE, words - w0), e0 = w0 * 64, ne = std::min(d - e0, nw * 64);
      std::memset(y, 0, nw * 64 * 4);
      for (int64_t k = 0; k < n; ++k) {
        const uint32_t cb = fbits((float)s * cp[k]);
        hash_tile(kp[k], w0, nw, h);
        for (int64_t i = 0; i < nw; ++i) {
          half_axpy((uint32_t)h[i], cb, y + 64 * i);
          half_axpy((uint32_t)(h[i] >> 32), cb, y + 64 * i + 32);
        }
      }
      for (int64_t e = 0; e < ne; ++e) op[e0 + e] += y[e];
    }
  });
}

torch::Tensor float_project(torch::Tensor x, torch::Tensor keys, double scale, double beta, bool cubic) {
  const int64_t d = x.numel(), n = keys.numel(), words = (d + 1) / 2;
  const float* xp = x.data_ptr<float>();
  const uint64_t* kp = (const uint64_t*)keys.data_ptr<int64_t>();
  const FloatLaw L{(float)scale, (float)beta, cubic};
  const int64_t parts = n_parts(words, FTILE);
  auto partial = torch::zeros({parts, n}, torch::kFloat64);
  double* pp = partial.data_ptr<double>();
  const int64_t per = ((words + parts - 1) / parts + 7) / 8 * 8;
  at::parallel_for(0, parts, grain(parts, n, d), [&](int64_t p0, int64_t p1) {
    uint32_t hw[2 * FTILE]; float xt[2 * FTILE];  // m <= 2 FTILE: 2 FTILE is a multiple of 16
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t wa = std::min(words, p * per), wb = std::min(words, wa + per);
      for (int64_t w0 = wa; w0 < wb; w0 += FTILE) {
        const int64_t nw = std::min(FTILE, wb - w0), e0 = 2 * w0, ne = std::min(d - e0, 2 * nw);
        const int64_t m = (2 * nw + 15) / 16 * 16;
        const float* xs = xp + e0;
        // x is zero past the block's end, so the padding halves' entries add nothing
        if (ne < m) { std::memcpy(xt, xs, ne * 4); std::memset(xt + ne, 0, (m - ne) * 4); xs = xt; }
        for (int64_t e = 2 * nw; e < m; ++e) hw[e] = 0;
        for (int64_t k = 0; k < n; ++k) {
          hash_halves(kp[k], w0, nw, hw);
          float acc[16];
          for (int l = 0; l < 16; ++l) acc[l] = 0;
          if (L.cubic) float_dot<true>(hw, xs, m, L.scale, L.beta, acc);
          else float_dot<false>(hw, xs, m, L.scale, L.beta, acc);
          pp[p * n + k] += lanes_sum(acc, 16);
        }
      }
    }
  });
  return partial.sum(0).to(torch::kFloat32);
}

void float_rebuild(torch::Tensor coef, torch::Tensor keys, double scale, double beta, bool cubic, torch::Tensor out) {
  const int64_t d = out.numel(), n = keys.numel(), words = (d + 1) / 2;
  float* op = out.data_ptr<float>();
  const float* cp = coef.data_ptr<float>();
  const uint64_t* kp = (const uint64_t*)keys.data_ptr<int64_t>();
  const FloatLaw L{(float)scale, (float)beta, cubic};
  const int64_t tiles = (words + FTILE - 1) / FTILE;
  at::parallel_for(0, tiles, grain(tiles, n, d), [&](int64_t t0, int64_t t1) {
    uint32_t hw[2 * FTILE]; float y[2 * FTILE];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t w0 = t * FTILE, nw = std::min(FTILE, words - w0), e0 = 2 * w0, ne = std::min(d - e0, 2 * nw);
      std::memset(y, 0, 2 * nw * 4);
      for (int64_t k = 0; k < n; ++k) {
        hash_halves(kp[k], w0, nw, hw);
        if (L.cubic) float_axpy<true>(hw, cp[k], 2 * nw, L.scale, L.beta, y);
        else float_axpy<false>(hw, cp[k], 2 * nw, L.scale, L.beta, y);
      }
      for (int64_t e = 0; e < ne; ++e) op[e0 + e] += y[e];
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rademacher_project", &rademacher_project);
  m.def("rademacher_rebuild", &rademacher_rebuild);
  m.def("float_project", &float_project);
  m.def("float_rebuild", &float_rebuild);
}
"""

_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def load():
    """The compiled extension (built on first use, then loaded from torch's extension cache).
    Raises where it cannot be built (no compiler, no headers): :mod:`ferret.projection` then
    turns the fused CPU path off with one warning and runs its reference path."""
    from torch.utils.cpp_extension import load_inline

    with _LOCK:
        return load_inline("ferret_fused_cpu", cpp_sources=[_SOURCE], functions=None,
                           extra_cflags=["-O3", "-march=native", "-fopenmp"],
                           extra_ldflags=["-fopenmp"], verbose=False)


FUSED_BASES = ("rademacher", "uniform", "trunc_normal")


def supports(kind: str, x: torch.Tensor) -> bool:
    """Whether a fused kernel covers this basis, size and tensor (else the reference path runs).
    trunc_normal below d = 2048 uses torch's erfinv in the reference; gaussian uses sin/cos."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or kind not in FUSED_BASES:
        return False
    return kind != "trunc_normal" or x.numel() >= 2048


def launch_key(kind: str, d: int, n: int) -> tuple | None:
    """What a call on a block of d with n seeds needs built: the one extension for every shape
    (it compiles once, not per shape), or None where the reference path runs instead."""
    if kind not in FUSED_BASES or (kind == "trunc_normal" and d < 2048):
        return None
    return ("cpu",)


def project(x: torch.Tensor, keys: torch.Tensor, kind: str) -> torch.Tensor:
    x, keys = x.contiguous(), keys.contiguous()
    if kind == "rademacher":
        return load().rademacher_project(x, keys, 1.0 / math.sqrt(x.numel()))
    _, scale, beta, cubic = float_law(kind, x.numel())
    return load().float_project(x, keys, scale, beta, cubic)


def reconstruct(coef: torch.Tensor, keys: torch.Tensor, kind: str, out: torch.Tensor) -> torch.Tensor:
    coef, keys = coef.to(torch.float32).contiguous(), keys.contiguous()
    if kind == "rademacher":
        load().rademacher_rebuild(coef, keys, 1.0 / math.sqrt(out.numel()), out)
    else:
        _, scale, beta, cubic = float_law(kind, out.numel())
        load().float_rebuild(coef, keys, scale, beta, cubic, out)
    return out
