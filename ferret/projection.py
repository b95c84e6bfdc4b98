"""Shared-randomness bases: project a flat update onto n seeded bases and rebuild it.

Ferret (Shu et al., arXiv 2409.06277, Alg. 1) sends, per parameter block of size d, the
coordinates gamma_k = <delta, v_k> of the update on n random bases v_1..v_n that every party can
regenerate from shared seeds; the server rebuilds sum_k c_k v_k. This module does the
generation and the two products on tensors only (it knows nothing of models).

How the bases are generated, and why
------------------------------------
* Two implementations of the products: fused kernels (:mod:`ferret.kernels.cpu`: each entry
  made in registers and consumed at once, no chunk buffer; Rademacher, uniform, trunc_normal on
  CPU) and the reference path in plain torch ops below (every basis, every device; the kernels
  are tested against it bit for bit). Both use the bits described next.
* Counter-based, not stateful: every basis entry is a pure function of (seed, block, index):
  splitmix64's finaliser applied to ``key + (w + 1) * golden`` for the 64-bit word w that holds
  the entry, where ``key = mix(mix(seed) ^ mix(block))``. Any chunk of any basis can therefore be
  generated on its own, in any order, on CPU or GPU, with identical integer bits everywhere
  (wrapping 64-bit and 32-bit integer arithmetic is the same on both). A K x d matrix is never
  materialised: `project` and `reconstruct` walk the block in chunks of ``chunk_elems // n``
  columns (multiples of 64) generated into one reused workspace (plus a 1 MiB scratch), so the
  extra memory is about one chunk, n x chunk entries, and no allocation happens per chunk; both
  products are fp32 matrix-vector products on the chunk (bf16 GEMV is ~7x slower than fp32 on CPU).
  Rademacher hashes are computed 8 chunks ahead (a quarter of a chunk's bytes), because hashing
  one chunk's few words took ~15 small ops whose fixed cost was half the time of a 1M-entry chunk.
  On CPU with several torch threads, spans of 8 chunks go to single-threaded worker threads
  (:class:`_Workers`), each with chunks of chunk_elems / workers entries, rather than every op
  forking and joining torch's threads (see the class for the measurement).
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
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ferret.kernels import cpu as fused_kernels

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
_SIGN32 = -(1 << 31)  # int32 with only the sign bit set
_MANTISSA22 = 0x007FFFFE  # 22 random bits above the lowest mantissa bit
_ONE_ODD = 0x3F800001  # exponent of 1.0 and the lowest mantissa bit: u = 1 + odd * 2^-23
_MIX_PIECE = 1 << 17  # words of scratch (1 MiB): stays in L2 and bounds the temporaries
_SHIFTS: dict[torch.device, torch.Tensor] = {}
_LOCAL = threading.local()  # per-thread state: buffers, the active walk, whether a worker; never returned


_BUFFERS: list[dict] = []  # every thread's buffers, for release_buffers()
_SPAN_CHUNKS = 8  # Rademacher hashes computed ahead, in chunks; also the chunks per worker job


def _thread_buffer(name: str, numel: int, device: torch.device) -> torch.Tensor:
    """This thread's grow-only int64 buffer `name`, reused across chunks, spans and calls
    (allocating ~10 MiB per span cost page faults and fragmented the heap)."""
    cache = _LOCAL.__dict__.get("buffers")
    if cache is None:
        cache = _LOCAL.buffers = {}
        _BUFFERS.append(cache)
    buf = cache.get((name, device))
    if buf is None or buf.numel() < numel:
        cache.pop((name, device), None)  # free the smaller one before making the larger
        buf = cache[(name, device)] = torch.empty(numel, dtype=torch.int64, device=device)
    return buf[:numel]


def _scratch(device: torch.device) -> torch.Tensor:
    """A reusable int64 buffer of _MIX_PIECE words, so that generating a chunk allocates nothing
    but the chunk itself (no per-chunk temporaries for the allocator to fragment)."""
    return _thread_buffer("scratch", _MIX_PIECE, device)


def release_buffers() -> None:
    """Free the buffers kept between calls (one chunk's entries in all, a quarter of that in
    hashes, and a 1 MiB scratch per thread); the next call makes them again. Not during a call."""
    for cache in _BUFFERS:
        cache.clear()


class _Walk:
    """What one project / reconstruct / generate walk reuses from chunk to chunk: the buffer every
    chunk is generated into, and (Rademacher) the hashes of several chunks' words at once, so that
    a chunk costs a few large ops instead of the ~15 small ones of hashing it (measured: at 1M
    entries per chunk, per-chunk op overhead was half the time). A walk nested in another one on
    the same thread gets buffers of its own."""

    def __init__(self, keys: torch.Tensor, step: int, ahead_words: int, nested: bool) -> None:
        n, device = keys.shape[0], keys.device
        self.keys = keys
        self.ahead_words = ahead_words
        self._nested = nested
        self.workspace = self._allocate("workspace", n * (step + 128) // 2 + 1)
        self._words_buffer: torch.Tensor | None = None
        self.words: torch.Tensor | None = None  # (n, count) hashes of words [first_word, first_word + count)
        self.first_word = 0

    def _allocate(self, name: str, numel: int) -> torch.Tensor:
        if self._nested:
            return torch.empty(numel, dtype=torch.int64, device=self.keys.device)
        return _thread_buffer(name, numel, self.keys.device)

    def words_buffer(self) -> torch.Tensor:
        """n x ahead_words int64 for the look-ahead hashes, made on first use (Rademacher only)."""
        if self._words_buffer is None:
            self._words_buffer = self._allocate("words", self.keys.shape[0] * self.ahead_words)
        return self._words_buffer


@contextmanager
def _walk(keys: torch.Tensor, step: int) -> Iterator[None]:
    """Inside project/reconstruct/generate: chunks of `keys`' bases are generated into one buffer
    (a chunk is consumed before the next is made) and Rademacher hashes are computed
    _SPAN_CHUNKS chunks ahead. Direct calls of :func:`basis_chunk` outside it get fresh tensors."""
    previous = getattr(_LOCAL, "walk", None)
    _LOCAL.walk = _Walk(keys, step, _SPAN_CHUNKS * (step // 64 + 2), nested=previous is not None)
    try:
        yield
    finally:
        _LOCAL.walk = previous


def _buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor: a view of the active walk's workspace when it fits, else a new one."""
    walk = getattr(_LOCAL, "walk", None)
    size = math.prod(shape) * dtype.itemsize
    if walk is None or walk.workspace.device != device or walk.workspace.numel() * 8 < size:
        return torch.empty(shape, dtype=dtype, device=device)
    return walk.workspace.view(torch.uint8)[:size].view(dtype).view(shape)


def _xorshift_(z: torch.Tensor, shift: int, mask: int) -> None:
    """z ^= z >>> shift (logical) in place, piece by piece through the scratch buffer."""
    scratch = _scratch(z.device)
    for part in z.view(-1).split(_MIX_PIECE):
        tmp = torch.bitwise_right_shift(part, shift, out=scratch[: part.numel()])
        part ^= tmp.bitwise_and_(mask)


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


def _sign_words(keys: torch.Tensor, first: int, last: int, d: int) -> torch.Tensor:
    """Hashes of words [first, last) of the Rademacher stream, shape (n, last - first): from the
    active walk's look-ahead when it has them (computing the next 8 chunks' words if not)."""
    walk = getattr(_LOCAL, "walk", None)
    if walk is None or walk.keys is not keys or last - first > walk.ahead_words:
        return _hashes(keys, first, last - first)
    words = walk.words
    if words is None or first < walk.first_word or last > walk.first_word + words.shape[1]:
        count = max(last - first, min(walk.ahead_words, (d + 63) // 64 - first))
        out = walk.words_buffer()[: keys.shape[0] * count].view(keys.shape[0], count)
        walk.words, walk.first_word = _hashes(keys, first, count, out=out), first
        words = walk.words
    return words[:, first - walk.first_word : last - walk.first_word]


def _signs(keys: torch.Tensor, start: int, length: int, d: int) -> torch.Tensor:
    """Rademacher entries [start, start + length): bit j of each 32-bit half -> sign bit."""
    n = keys.shape[0]
    first, last = start // 64, (start + length + 63) // 64
    halves = _sign_words(keys, first, last, d).view(torch.int32)  # (n, 2W), little-endian halves
    shifts = _SHIFTS.get(keys.device)
    if shifts is None:
        shifts = _SHIFTS.setdefault(keys.device, 31 - torch.arange(32, dtype=torch.int32, device=keys.device))
    out = torch.bitwise_left_shift(halves[:, :, None], shifts,  # bit j of the half now at bit 31
                                   out=_buffer((n, halves.shape[1], 32), torch.int32, keys.device))
    out &= _SIGN32
    out ^= _f32_bits(-1.0 / math.sqrt(d))  # bit set -> +1/sqrt(d), clear -> -1/sqrt(d)
    offset = start - 64 * first
    return out.view(n, -1)[:, offset : offset + length].view(torch.float32)


def _centered_uniform(keys: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Entries [start, start + length) as t in (-1/2, 1/2), 2^22 levels, mean exactly 0."""
    first, last = start // 2, (start + length + 1) // 2
    words = _buffer((keys.shape[0], last - first), torch.int64, keys.device)
    bits = _hashes(keys, first, last - first, out=words).view(torch.int32)  # two entries per word
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
    if beta * 0.25 > 2.0**-25:
        scratch = _scratch(t.device).view(torch.float32)
        # t^3 through the scratch, in pieces that fit it (a chunk of one basis row can be longer)
        for rows in t.split(max(1, scratch.numel() // max(length, 1)), dim=0):
            for part in rows.split(max(1, scratch.numel() // rows.shape[0]), dim=1):
                cube = torch.mul(part, part, out=scratch[: part.numel()].view(part.shape)).mul_(part)
                part.add_(cube, alpha=beta)
    return t.mul_(math.sqrt(math.pi / 2) * 2 * m)


def _chunk_len(n: int, chunk_elems: int) -> int:
    """Columns per chunk so that an (n, cols) chunk holds at most chunk_elems entries (>= 64)."""
    return max(64, (chunk_elems // max(n, 1)) // 64 * 64)


DEFAULT_CHUNK = 1 << 22  # entries per chunk, split among the CPU workers (16 MiB of float32 in all)


class _Workers:
    """CPU worker threads that each run torch single-threaded. Two torch threads per op, with a
    fork and join in each of a chunk's ~5 ops, had episodes of several seconds at a quarter of
    the speed on the 2-core machine this was measured on (3.6 G/s, then 0.8 G/s for 20 calls);
    whole chunks on single-threaded workers never did, and keep each chunk on one core's cache."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        ready = threading.Barrier(n + 1)
        for _ in range(n):
            threading.Thread(target=self._loop, args=(ready,), daemon=True).start()
        ready.wait()
        torch.set_num_threads(n)  # a worker's set_num_threads(1) also set torch's process default

    def _loop(self, ready: threading.Barrier) -> None:
        torch.get_num_threads()  # torch's per-thread start-up first, or it would undo the next line
        torch.set_num_threads(1)
        _LOCAL.in_worker = True  # a walk started here runs here, not on the workers again
        ready.wait()
        while (task := self.tasks.get()) is not None:
            task()

    def close(self) -> None:
        for _ in range(self.n):
            self.tasks.put(None)

    def run(self, jobs: list[Callable[[], Any]]) -> list:
        """Call every job on the workers (each worker takes the next job when free); results in
        job order, the first exception re-raised."""
        results: list = [None] * len(jobs)
        errors: list[BaseException] = []
        left = threading.Semaphore(0)

        def call(i: int) -> None:
            try:
                results[i] = jobs[i]()
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)
            finally:
                left.release()

        for i in range(len(jobs)):
            self.tasks.put(functools.partial(call, i))
        for _ in jobs:
            left.acquire()
        if errors:
            raise errors[0]
        return results


_WORKERS: _Workers | None = None
_WORKERS_LOCK = threading.Lock()


def _workers(device: torch.device) -> _Workers | None:
    """The worker threads for this many torch threads, or None where one thread does the walk
    (GPU, one torch thread, or a call from inside a worker)."""
    global _WORKERS
    n = torch.get_num_threads()
    if device.type != "cpu" or n < 2 or getattr(_LOCAL, "in_worker", False):
        return None
    with _WORKERS_LOCK:
        if _WORKERS is None or _WORKERS.n != n:
            if _WORKERS is not None:
                _WORKERS.close()
            _WORKERS = _Workers(n)
        return _WORKERS


def _walk_spans(keys: torch.Tensor, d: int, chunk_elems: int, chunks: Callable[[int, int, int], Any]) -> list:
    """Run ``chunks(start, stop, step)`` over [0, d): in one call on GPU or one thread, else over
    spans of _SPAN_CHUNKS chunks shared out among the CPU workers (each worker's chunk holds
    chunk_elems / workers entries, so the chunks in flight hold chunk_elems in all). Returns the calls' results in span order, so that sums over them do not depend on
    the threads' timing."""
    workers = _workers(keys.device)
    step = _chunk_len(keys.shape[0], chunk_elems // (workers.n if workers is not None else 1))
    if workers is None:
        with _walk(keys, step):
            return [chunks(0, d, step)]
    span = step * _SPAN_CHUNKS  # a block of one span still goes to a worker: single-threaded ops

    def job(lo: int) -> Any:
        with _walk(keys, step):
            return chunks(lo, min(lo + span, d), step)

    return workers.run([functools.partial(job, lo) for lo in range(0, d, span)])


def generate(kind: str, keys: torch.Tensor, d: int, chunk_elems: int = DEFAULT_CHUNK) -> None:
    """Generate all n x d entries chunk by chunk and discard them: the floor under `project` and
    `reconstruct` (same chunks, same workers, no products), for ``ferret bench projection``."""

    def chunks(lo: int, hi: int, step: int) -> None:
        for start in range(lo, hi, step):
            basis_chunk(kind, keys, start, min(step, hi - start), d)

    _walk_spans(keys, d, chunk_elems, chunks)


def project(x: torch.Tensor, keys: torch.Tensor, kind: str, chunk_elems: int = DEFAULT_CHUNK,
            fused: bool = True) -> torch.Tensor:
    """Coordinates <x, v_k> of a flat float32 vector x on the bases of `keys`, shape (n,): by the
    fused kernel (:mod:`ferret.kernels.cpu`) where one covers the basis and device, else (or with
    ``fused=False``) by the reference path below, chunks of ``chunk_elems`` entries."""
    if fused and fused_kernels.supports(kind, x):
        return fused_kernels.project(x, keys, kind)
    d = x.numel()

    def chunks(lo: int, hi: int, step: int) -> torch.Tensor:
        out = torch.zeros(keys.shape[0], dtype=torch.float32, device=x.device)
        for start in range(lo, hi, step):
            length = min(step, hi - start)
            out.addmv_(basis_chunk(kind, keys, start, length, d), x[start : start + length])
        return out

    parts = _walk_spans(keys, d, chunk_elems, chunks)
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)


def reconstruct(coef: torch.Tensor, keys: torch.Tensor, kind: str, out: torch.Tensor,
                chunk_elems: int = DEFAULT_CHUNK, fused: bool = True) -> torch.Tensor:
    """Add sum_k coef[k] v_k to the flat float32 vector `out` (in place) and return it (fused
    kernel or reference path, as in :func:`project`)."""
    if fused and out.is_contiguous() and fused_kernels.supports(kind, out):
        return fused_kernels.reconstruct(coef, keys, kind, out)
    d = out.numel()

    def chunks(lo: int, hi: int, step: int) -> None:
        for start in range(lo, hi, step):  # spans are disjoint: no two workers write one entry
            length = min(step, hi - start)
            out[start : start + length].addmv_(basis_chunk(kind, keys, start, length, d).T, coef)

    _walk_spans(keys, d, chunk_elems, chunks)
    return out
