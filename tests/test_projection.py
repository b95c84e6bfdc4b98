"""Shared-randomness bases: determinism, chunking, unbiasedness, memory."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from ferret import projection as P


@pytest.mark.parametrize("kind", P.BASES)
def test_bases_are_a_pure_function_of_seed_block_and_index(kind):
    keys = P.stream_keys(torch.tensor([3, 99, 2**40]), block=5)
    whole = P.basis_chunk(kind, keys, 0, 1000, 1000)
    pieces = torch.cat([P.basis_chunk(kind, keys, s, 128, 1000)[:, : min(128, 1000 - s)]
                        for s in range(0, 1000, 128)], dim=1)
    assert torch.equal(whole, pieces)  # any chunking regenerates the same entries
    again = P.basis_chunk(kind, P.stream_keys(torch.tensor([3, 99, 2**40]), block=5), 0, 1000, 1000)
    assert torch.equal(whole, again)  # a second party with the same seeds gets the same bits
    other_block = P.basis_chunk(kind, P.stream_keys(torch.tensor([3, 99, 2**40]), block=6), 0, 1000, 1000)
    assert not torch.equal(whole, other_block)
    assert not torch.equal(whole[0], whole[1])


@pytest.mark.parametrize("kind", P.BASES)
def test_basis_moments_match_declared_variance(kind):
    d = 4096
    V = P.basis_chunk(kind, P.stream_keys(torch.arange(64), 0), 0, d, d).double()
    var = P.basis_variance(kind, d)
    assert abs(V.mean().item()) < 5 * math.sqrt(var / V.numel())
    assert V.var().item() == pytest.approx(var, rel=0.03)
    gram = V @ V.T / (d * var)  # ~ identity: bases nearly orthogonal, unit norm after scaling
    assert (gram.diagonal() - 1).abs().max() < 0.1
    assert (gram - torch.diag(gram.diagonal())).abs().max() < 0.1


@pytest.mark.parametrize("small", [7 * 64, 3 * 64])  # all 7 seeds per chunk; seeds in groups of 3
def test_project_and_reconstruct_are_chunking_invariant(small):
    x = torch.randn(5000)
    keys = P.stream_keys(torch.arange(7), 1)
    g_small = P.project(x, keys, "rademacher", chunk_elems=small, fused=False)
    g_big = P.project(x, keys, "rademacher", chunk_elems=1 << 20, fused=False)
    torch.testing.assert_close(g_small, g_big)
    r_small = P.reconstruct(g_small, keys, "rademacher", torch.zeros(5000), chunk_elems=small, fused=False)
    r_big = P.reconstruct(g_small, keys, "rademacher", torch.zeros(5000), chunk_elems=1 << 20, fused=False)
    torch.testing.assert_close(r_small, r_big)


@pytest.mark.parametrize("kind", P.BASES)
def test_chunked_reference_equals_the_dense_products(kind):
    """The reference path walks the block in chunks; its results equal the dense products."""
    d = 3000
    keys = P.stream_keys(torch.arange(5), 2)
    V = P.basis_chunk(kind, keys, 0, d, d).double()
    x, c = torch.randn(d), torch.randn(5)
    torch.testing.assert_close(P.project(x, keys, kind, chunk_elems=5 * 128, fused=False).double(), V @ x.double(),
                               rtol=1e-4, atol=1e-5)  # fp32 accumulation
    rebuilt = P.reconstruct(c, keys, kind, torch.zeros(d), chunk_elems=5 * 128, fused=False).double()
    torch.testing.assert_close(rebuilt, V.T @ c.double(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", P.BASES)
@pytest.mark.parametrize("n", [1, 3])
def test_long_chunks_match_their_pieces(kind, n):
    """A chunk of few bases is long (chunk_elems / n columns); it must equal the same entries
    generated in short pieces (regression: one trunc_normal basis over a 1M-entry chunk once
    overran a scratch buffer)."""
    d = 3 * (1 << 18) + 5
    keys = P.stream_keys(torch.arange(n), 4)
    long = P.basis_chunk(kind, keys, 0, d, d).clone()
    pieces = torch.cat([P.basis_chunk(kind, keys, s, min(4096, d - s), d).clone() for s in range(0, d, 4096)], 1)
    torch.testing.assert_close(long, pieces, rtol=0, atol=0)


def _mean_rebuild_error(kind: str, n: int, trials: int, delta: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Average of `trials` independent unbiased-scaled rebuilds with n bases each."""
    d = delta.numel()
    acc = torch.zeros(d, dtype=torch.float64)
    alpha = 1.0 / (n * P.basis_variance(kind, d))
    for t in range(trials):
        keys = P.stream_keys(torch.arange(t * n, (t + 1) * n), 0)
        coef = P.project(delta, keys, kind) * alpha
        acc += P.reconstruct(coef, keys, kind, torch.zeros(d)).double()
    mean = acc / trials
    return mean, ((mean - delta.double()).norm() / delta.double().norm()).item()


@pytest.mark.parametrize("kind", P.BASES)
def test_unbiased_scaling_rebuild_averages_to_delta(kind):
    torch.manual_seed(0)
    delta = torch.randn(64)
    mean, err = _mean_rebuild_error(kind, n=8, trials=3000, delta=delta)
    # Each rebuild has relative variance ~ d/n = 8, so the mean's relative error is ~ sqrt(8/3000).
    assert err < 4 * math.sqrt(64 / 8 / 3000)
    assert torch.corrcoef(torch.stack([mean.float(), delta]))[0, 1] > 0.98


def test_rebuild_error_shrinks_as_K_grows():
    torch.manual_seed(1)
    delta = torch.randn(256)
    errors = [_mean_rebuild_error("rademacher", n=n, trials=1, delta=delta)[1] for n in (8, 64, 512)]
    # single rebuilds: relative error ~ sqrt(d / n)
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1.5 * math.sqrt(256 / 512)


def test_official_scaling_expectation_is_d_times_variance():
    """Official: coordinates x d/n; with the truncated normal on +-1/sqrt(d), E = delta/3."""
    torch.manual_seed(2)
    d, n, trials = 48, 8, 3000
    delta = torch.randn(d)
    acc = torch.zeros(d, dtype=torch.float64)
    for t in range(trials):
        keys = P.stream_keys(torch.arange(t * n, (t + 1) * n), 0)
        coef = P.project(delta, keys, "trunc_normal") * (d / n)
        acc += P.reconstruct(coef, keys, "trunc_normal", torch.zeros(d)).double()
    expected = d * P.basis_variance("trunc_normal", d)
    assert expected == pytest.approx(1 / 3, rel=0.02)
    ratio = (acc / trials) @ delta.double() / (delta.double() @ delta.double())
    assert ratio.item() == pytest.approx(expected, rel=0.1)


def _chunk_sizes(monkeypatch) -> list[int]:
    """The sizes of every basis chunk the reference path generates from now on."""
    sizes = []
    real = P.basis_chunk

    def spy(kind, keys, start, length, dd):
        out = real(kind, keys, start, length, dd)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(P, "basis_chunk", spy)
    return sizes


@pytest.mark.parametrize("budget", [(256 << 16) // 64, 16 * 64])  # the second: fewer than 64 columns x n seeds
def test_chunks_never_exceed_the_budget(monkeypatch, budget):
    """O(chunk) memory: no generated chunk is larger than chunk_elems, although n x d is 64x
    (or 16384x) larger, and every entry is generated exactly once per pass."""
    n, d = 256, 1 << 16
    shapes = _chunk_sizes(monkeypatch)
    keys = P.stream_keys(torch.arange(n), 0)
    coef = P.project(torch.randn(d), keys, "rademacher", chunk_elems=budget, fused=False)
    P.reconstruct(coef, keys, "rademacher", torch.zeros(d), chunk_elems=budget, fused=False)
    assert max(shapes) <= budget < n * d
    assert sum(shapes) == 2 * n * d


def test_blocks_no_kernel_covers_take_tile_sized_chunks(monkeypatch):
    """A small trunc_normal block has no fused kernel; on the fused path its reference chunks stay
    within one kernel tile (4096 entries) although the default chunk is 1000x larger, and the
    results are the reference's."""
    n, d = 256, 1000
    keys = P.stream_keys(torch.arange(n), 5)
    x, c = torch.randn(d), torch.randn(n)
    want_g = P.project(x, keys, "trunc_normal", fused=False)
    want_r = P.reconstruct(c, keys, "trunc_normal", torch.zeros(d), fused=False)
    shapes = _chunk_sizes(monkeypatch)
    torch.testing.assert_close(P.project(x, keys, "trunc_normal"), want_g)
    torch.testing.assert_close(P.reconstruct(c, keys, "trunc_normal", torch.zeros(d)), want_r)
    assert max(shapes) <= 4096 < n * d
    assert sum(shapes) == 2 * n * d


def test_peak_memory_stays_far_below_K_times_d():
    """In a fresh process, project + rebuild with K x d = 4 GiB of float32 entries."""
    code = """
import resource, torch
from ferret import projection as P
torch.set_num_threads(1)
d, K = 1 << 21, 512
x = torch.randn(d)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
keys = P.stream_keys(torch.arange(K), 0)
g = P.project(x, keys, "rademacher", chunk_elems=1 << 22)
P.reconstruct(g, keys, "rademacher", torch.zeros(d), chunk_elems=1 << 22)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    extra_mb = float(out.stdout.strip())
    # Budget: a few chunk-sized temporaries (int64 hashes, bits, float chunk) + one d-vector;
    # materialising K x d float32 would be 4096 MiB.
    assert extra_mb < 400, extra_mb


def test_rademacher_signs_are_the_documented_bits_of_the_hash():
    """Entry 64 w + j is +1/sqrt(d) exactly when bit j of word w's hash is set (any start)."""
    keys = P.stream_keys(torch.tensor([5, 2**50]), 3)
    d, start, length = 1000, 70, 300
    words = P._hashes(keys, 0, 6)
    j = torch.arange(start, start + length)
    bits = (words[:, j // 64] >> (j % 64)) & 1
    scale = torch.tensor(1 / math.sqrt(d), dtype=torch.float32)
    expected = torch.where(bits == 1, scale, -scale)
    assert torch.equal(P.basis_chunk("rademacher", keys, start, length, d), expected)


def test_float_bases_are_centred_exactly():
    """t = u - 1.5 takes 2^22 levels symmetric about 0: the level set's mean is exactly 0."""
    t = P._centered_uniform(P.stream_keys(torch.arange(8), 0), 0, 4096).double()
    assert t.abs().max() < 0.5
    assert torch.equal((t * 2**23) % 2, torch.ones_like(t))  # odd multiples of 2^-23 only
    assert t.min() < -0.49 and t.max() > 0.49


@pytest.mark.parametrize("d", [2048, 100_000, 10_000_000])
def test_trunc_normal_polynomial_equals_the_inverse_cdf(d):
    """The cubic series replaces erfinv for d >= 2048: same values as the exact float64 transform."""
    keys = P.stream_keys(torch.arange(16), 2)
    t = P._centered_uniform(keys, 0, 2048).double()
    a = 1 / math.sqrt(d)
    m = math.erf(a / math.sqrt(2))
    exact = torch.special.erfinv(2 * m * t) * math.sqrt(2)
    got = P.basis_chunk("trunc_normal", keys, 0, 2048, d).double()
    assert ((got - exact).abs() / exact.abs()).max() < 2e-7
    assert got.abs().max() <= a


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", P.BASES)
def test_cuda_bases_equal_cpu_bases(kind):
    keys = P.stream_keys(torch.arange(17), 4)
    cpu = P.basis_chunk(kind, keys, 64, 3000, 10_000)
    gpu = P.basis_chunk(kind, keys.cuda(), 64, 3000, 10_000).cpu()
    if kind == "rademacher":
        assert torch.equal(cpu, gpu)  # integer bits only
    else:
        torch.testing.assert_close(cpu, gpu, rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_project_and_rebuild_match_cpu():
    x = torch.randn(50_000)
    keys = P.stream_keys(torch.arange(64), 0)
    g_cpu = P.project(x, keys, "rademacher")
    g_gpu = P.project(x.cuda(), keys.cuda(), "rademacher").cpu()
    torch.testing.assert_close(g_cpu, g_gpu, rtol=1e-4, atol=1e-5)
    r_cpu = P.reconstruct(g_cpu, keys, "rademacher", torch.zeros(50_000))
    r_gpu = P.reconstruct(g_cpu.cuda(), keys.cuda(), "rademacher", torch.zeros(50_000, device="cuda")).cpu()
    torch.testing.assert_close(r_cpu, r_gpu, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["rademacher", "uniform", "trunc_normal"])
def test_cuda_fused_kernels_match_the_cpu_reference(kind):
    """On CUDA the Triton kernels run (triton installed) and agree with the CPU reference path."""
    d, n = 70_001, 7
    assert P._kernels(torch.zeros(1, device="cuda")) is not None
    x, c, keys = torch.randn(d), torch.randn(n), P.stream_keys(torch.arange(n), 2)
    g = P.project(x.cuda(), keys.cuda(), kind).cpu()
    torch.testing.assert_close(g, P.project(x, keys, kind, fused=False), rtol=1e-5, atol=1e-5)
    r = P.reconstruct(c.cuda(), keys.cuda(), kind, torch.zeros(d, device="cuda")).cpu()
    torch.testing.assert_close(r, P.reconstruct(c, keys, kind, torch.zeros(d), fused=False), rtol=1e-5, atol=1e-6)


# --- fused kernels (ferret.kernels.cpu) against the reference path --------------------------------

FUSED_SIZES = [(4097, 5), (65, 1), (1000, 3), (2048, 2), (70_001, 7)]  # d not a multiple of 64, tiny, one seed


@pytest.mark.parametrize("kind", P.BASES)
@pytest.mark.parametrize("d,n", FUSED_SIZES)
def test_fused_bases_are_bit_identical_and_products_match_reference(kind, d, n):
    """Rebuilding one basis (one-hot coefficients, zero output) gives its entries exactly (1 * v + 0
    rounds to v): every entry the fused kernel makes equals the reference's bits. Project and a
    general rebuild agree with the reference to fp32 summation error. Bases without a kernel
    (gaussian, trunc_normal below d = 2048) take the reference path and must still agree."""
    from ferret.kernels import cpu as F

    keys = P.stream_keys(torch.arange(100, 100 + n), 3)
    ref = P.basis_chunk(kind, keys, 0, d, d).clone()
    for k in range(n):
        onehot = torch.zeros(n)
        onehot[k] = 1.0
        v = P.reconstruct(onehot, keys, kind, torch.zeros(d))
        assert torch.equal(v.view(torch.int32), ref[k].view(torch.int32)), (kind, d, n, k)
    g = torch.Generator().manual_seed(d * 31 + n)
    x, c = torch.randn(d, generator=g), torch.randn(n, generator=g)
    # Each path must be as close to the exact (float64) dot product as fp32 summation allows:
    # |error| <= lambda * sqrt(d) * u * ||x * b||_2 (the probabilistic bound of Higham & Mary, 2019,
    # with lambda = 4 and u = 2^-24), so neither can drift from the other unnoticed.
    terms = ref.double() * x.double()
    exact, bound = terms.sum(1), 4 * math.sqrt(d) * 2.0**-24 * terms.norm(dim=1)
    for fused in (True, False):
        err = (P.project(x, keys, kind, fused=fused).double() - exact).abs()
        assert bool((err <= bound).all()), (fused, float((err / bound).max()))
    torch.testing.assert_close(P.reconstruct(c, keys, kind, torch.ones(d)),
                               P.reconstruct(c, keys, kind, torch.ones(d), fused=False), rtol=1e-5, atol=1e-6)
    if kind in F.FUSED_BASES and (kind != "trunc_normal" or d >= 2048):
        assert P._kernels(x) is F and F.supports(kind, x)  # the kernel, not the reference, was under test


def test_fused_project_does_not_depend_on_the_thread_count():
    """Partial sums over a fixed partition of the block, summed in order: the same bits on 1 and 2
    threads."""
    d, n = 300_007, 9
    x, keys = torch.randn(d), P.stream_keys(torch.arange(n), 1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = [P.project(x, keys, k) for k in ("rademacher", "trunc_normal")]
        torch.set_num_threads(2)
        two = [P.project(x, keys, k) for k in ("rademacher", "trunc_normal")]
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
