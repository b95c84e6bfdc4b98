"""``ferret bench projection``: ferret-bench's project + rebuild against the official per-seed loop
and against the floor, over a grid of block sizes d and seed counts K, in one process.

Per grid point (d, K), on a d-parameter vector split into blocks the way Ferret groups a LLaMA-
shaped model (:func:`model_shapes`, ``group_blocks``):

(a) the official per-seed loop (:mod:`ferret.bench.official`), truncated-normal bases; timed on
    the first ``a_seeds`` of the K seeds (``--official-s`` bounds its time) and scaled to K (its
    cost is the same for every seed; the table says how many seeds were timed);
(b) :func:`ferret.projection.project` and :func:`~ferret.projection.reconstruct` per block, for
    each basis in ``--bases``: the fastest of ``repeats`` calls of each (the first, cold call also
    gives the peak extra memory);
(f) the same two passes by the fused kernels (:mod:`ferret.kernels.cpu` on CPU,
    :mod:`ferret.kernels.triton` on CUDA; the reference path where no kernel covers the basis),
    ``f_*_over_b`` = (b) time / (f) time;
(c) the reference path's own floor: generating the K x d entries of the same basis alone (the
    fastest over three chunk sizes), and one read of d floats (memory bandwidth);
(h) the hardware floor of one pass, ``floor_s``: the longer of one read of d floats and the
    arithmetic of generating K x d entries without storing them, at the peak lane-op rate
    measured by a register-only microbench (``lane_gops``; derivation in :mod:`ferret.bench.floor`);
    ``f_over_floor`` = the slower fused pass / ``floor_s``.

Fastest-of-n, as timeit recommends: on a shared machine single calls vary (episodes of several
seconds at a quarter of the speed were seen on the 2-core machine). Each point's measured rates
replace the start-up calibration in predicting the next points' time.

Ratios: ``a_over_b`` = (a project + a rebuild) / (b project + b rebuild); ``b_over_c`` = (b project
+ b rebuild) / (2 c) (both b passes generate K x d entries once each). Peak extra memory of (b) is
the larger of its two passes (see :mod:`ferret.bench.measure`); ``bound_mb`` = 2 x chunk_elems + d
floats, what (b) holds live at once. On glibc its RSS delta also holds the heap's fragmentation, so
``mem_ok`` can read False while the allocations are within the bound: (b) allocates and frees
chunk-sized temporaries per chunk, which glibc's dynamic mmap threshold serves from the heap
(trunc_normal, d = 1e6, K = 256, one thread: 80-96 MiB RSS delta; 32 MiB with
``mallopt(M_MMAP_THRESHOLD, 1 MiB)``, which makes every chunk a fresh mmap and the pass 2x slower,
so the bench leaves glibc's default). (f) allocates no chunks. Agreement: when (b) uses the
official distribution (trunc_normal), its coordinates and rebuild norms must match (a)'s
statistically (:func:`agreement`). Grid points whose predicted time
exceeds what is left of ``--budget-s`` are skipped, cheapest first, and listed as skipped.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ferret import projection as P
from ferret.algorithms.ferret import group_blocks
from ferret.bench import floor
from ferret.bench.measure import best_seconds, run_measured
from ferret.bench.official import official_project, official_rebuild

COLUMNS = ["d", "K", "basis", "blocks", "status", "a_s", "a_seeds", "b_project_s", "b_rebuild_s", "b_s", "c_s",
           "c_chunk", "mem_pass_s", "mem_gbps", "a_geps", "b_project_geps", "b_rebuild_geps", "c_geps",
           "a_over_b", "b_over_c", "peak_extra_mb", "bound_mb", "mem_ok", "a_peak_mb", "agree", "agree_z",
           "f_project_s", "f_rebuild_s", "f_project_geps", "f_rebuild_geps", "f_project_over_b", "f_rebuild_over_b",
           "a_over_f", "f_peak_extra_mb", "lane_gops", "floor_s", "floor_geps", "f_over_floor"]


def model_shapes(d: int) -> list[int]:
    """Tensor sizes of a 4-layer LLaMA-shaped model (hidden h, grouped-query k/v of h/3, MLP
    8h/3, RMS norms) with exactly d parameters: the rest is an embedding-like last tensor."""
    h = max(8, int(math.sqrt(d / 43)) // 8 * 8)
    kv, inter = max(1, h // 3), 8 * h // 3
    layer = [h * h, kv * h, kv * h, h * h, h, inter * h, inter * h, h * inter, h]
    sizes: list[int] = []
    while sum(sizes) + sum(layer) <= d and len(sizes) < 4 * len(layer):
        sizes += layer
    rest = d - sum(sizes)
    return sizes + [rest] if rest > 0 else sizes


def block_sizes(d: int) -> list[int]:
    sizes = model_shapes(d)
    return [sum(sizes[i] for i in b) for b in group_blocks(sizes, 0.9)]


def _normalised(coords: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
    """Coordinates in units of ||delta_b|| / sqrt(d_b) (a basis of variance 1/d gives variance 1)."""
    scale = torch.tensor([math.sqrt(x.numel()) / float(x.norm()) for x in blocks])
    return (coords.cpu().double() * scale).flatten()


def _energy(rebuilds: list[torch.Tensor], n: int) -> float:
    """rho = sum_b d_b ||R_b||^2 / (n d) for rebuilds R_b = sum_k v_k (unit coefficients):
    E[rho] = size-weighted mean of d_b var_b (1 for variance-1/d bases, ~1/3 for trunc_normal),
    with relative spread ~ sqrt(2/d) (large blocks dominate, as they should)."""
    d = sum(r.numel() for r in rebuilds)
    return sum(r.numel() * float(r.double().square().sum()) for r in rebuilds) / (n * d)


def agreement(za: torch.Tensor, zb: torch.Tensor, rho_a: float, rho_b: float, largest_block: int,
              z_max: float = 4.0) -> tuple[bool, float]:
    """Do two sets of normalised coordinates come from the same law, and do the rebuilds have the
    same energy? Coordinates are sums over d entries, so nearly normal: the log variance ratio is
    ~N(0, 2/(na-1) + 2/(nb-1)) and the mean difference ~N(0, va/na + vb/nb). Returns (agree, the
    larger |z|); the rebuild energies rho (:func:`_energy`) must agree within 5 sqrt(2/d_max)
    relative: the official loop restarts one seed's stream in every block, so its blocks are
    correlated and the largest block d_max, not d, sets rho's spread (sqrt(2/d_max))."""
    na, nb = za.numel(), zb.numel()
    va, vb = float(za.var()), float(zb.var())
    z_var = math.log(va / vb) / math.sqrt(2 / max(na - 1, 1) + 2 / max(nb - 1, 1))
    z_mean = (float(za.mean()) - float(zb.mean())) / math.sqrt(va / na + vb / nb)
    z = max(abs(z_var), abs(z_mean))
    return bool(z < z_max and abs(rho_a / rho_b - 1) < 5 * math.sqrt(2 / largest_block)), z


@dataclass
class Rates:
    """Entries per second measured once at start-up, to predict each grid point's time."""

    official: float
    ours: dict[str, float]


def calibrate(bases: list[str], device: torch.device, chunk_elems: int) -> Rates:
    x = torch.randn(1 << 18, device=device)
    _, t_a, _ = run_measured(lambda: official_project([x], [1, 2]), device)
    ours = {}
    for basis in bases:
        keys = P.stream_keys(torch.arange(32, device=device), 0)
        P.project(x, keys, basis, chunk_elems, fused=False)  # warm-up (b: the reference path)
        _, t, _ = run_measured(lambda keys=keys, basis=basis: P.project(x, keys, basis, chunk_elems, fused=False),
                               device)
        ours[basis] = 32 * x.numel() / t
    return Rates(official=2 * x.numel() / t_a, ours=ours)


def predicted_seconds(d: int, K: int, bases: list[str], rates: Rates, official_s: float, repeats: int) -> float:
    """(a) capped at official_s, and per basis 2 x repeats passes of (b) + 3 floor candidates."""
    a = min(official_s, 2 * K * d / rates.official) + 2 * d / rates.official  # >= 1 seed
    return a + sum((4 * repeats + 3) * K * d / rates.ours[b] for b in bases)


def _ours(blocks: list[torch.Tensor], seeds: torch.Tensor, basis: str, chunk: int, device: torch.device,
          repeats: int = 3, clip_norm: float = 10.0, fused: bool = False) -> dict[str, Any]:
    """(b) the reference path, or with ``fused`` (f) the fused kernels (keys as b_*)."""
    def project() -> torch.Tensor:
        return torch.stack([P.project(x, P.stream_keys(seeds, b), basis, chunk, fused=fused)
                            for b, x in enumerate(blocks)], 1)

    def rebuild() -> list[torch.Tensor]:
        outs = list(torch.zeros(sum(x.numel() for x in blocks), device=device).split([x.numel() for x in blocks]))
        for b, out in enumerate(outs):  # unit coefficients, clipped as Ferret.apply_round does
            coef = torch.ones(seeds.numel(), device=device)
            v_norm = math.sqrt(out.numel() * P.basis_variance(basis, out.numel()))
            coef = coef * torch.clamp(clip_norm / (coef.abs() * v_norm + 1e-8), max=1.0)
            P.reconstruct(coef, P.stream_keys(seeds, b), basis, out, chunk, fused=fused)
        return outs

    coords, t_p, m_p = run_measured(project, device)
    outs, t_r, m_r = run_measured(rebuild, device)
    t_p = min(t_p, best_seconds(project, device, repeats - 1))
    t_r = min(t_r, best_seconds(rebuild, device, repeats - 1))
    return {"coords": coords, "rho": _energy(outs, seeds.numel()), "b_project_s": t_p, "b_rebuild_s": t_r,
            "peak_extra_mb": max(m_p, m_r)}


def _floor(blocks: list[torch.Tensor], seeds: torch.Tensor, basis: str, chunk: int) -> tuple[float, int]:
    """Fastest generation of all K x d entries over chunk sizes chunk/4, chunk, 4 chunk."""
    best = (math.inf, chunk)
    for c in (chunk // 4, chunk, chunk * 4):
        t0 = time.perf_counter()
        for b, x in enumerate(blocks):
            P.generate(basis, P.stream_keys(seeds, b), x.numel(), c)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        best = min(best, (time.perf_counter() - t0, c))
    return best


def _official(blocks: list[torch.Tensor], K: int, budget_s: float, rate: float,
              device: torch.device) -> dict[str, Any]:
    d = sum(x.numel() for x in blocks)
    m = int(max(1, min(K, budget_s * rate / (2 * d))))
    seeds = list(range(1, m + 1))
    coords, t_p, m_p = run_measured(lambda: official_project(blocks, seeds), device)
    outs = [torch.zeros(x.numel(), device=device) for x in blocks]
    _, t_r, m_r = run_measured(lambda: official_rebuild(torch.ones(m, len(blocks)), seeds, outs), device)
    return {"coords": coords, "rho": _energy(outs, m), "a_s": (t_p + t_r) * K / m, "a_seeds": m,
            "a_peak_mb": max(m_p, m_r)}


def measure_point(d: int, K: int, bases: list[str], device: torch.device, chunk: int, official_s: float,
                  rate_official: float, repeats: int = 3, lane_rate: float | None = None) -> list[dict[str, Any]]:
    """All rows of one grid point (one per basis); `lane_rate` (lane ops/s, measured here if not
    given) sets the arithmetic floor (:mod:`ferret.bench.floor`)."""
    if lane_rate is None:
        lane_rate = floor.lane_op_rate(device)
    sizes = block_sizes(d)
    x = torch.randn(d, device=device)
    blocks = list(x.split(sizes))
    mem = best_seconds(lambda: x.sum(), device)
    a = _official(blocks, K, official_s, rate_official, device)
    za = _normalised(a["coords"], blocks)
    seeds = torch.arange(1, K + 1, device=device)
    rows = []
    for basis in bases:
        b = _ours(blocks, seeds, basis, chunk, device, repeats)
        f = _ours(blocks, seeds, basis, chunk, device, repeats, fused=True)
        c_s, c_chunk = _floor(blocks, seeds, basis, chunk)
        b_s = b["b_project_s"] + b["b_rebuild_s"]
        row = {"d": d, "K": K, "basis": basis, "blocks": len(sizes), "status": "ok",
               "a_s": a["a_s"], "a_seeds": a["a_seeds"], "b_project_s": b["b_project_s"],
               "b_rebuild_s": b["b_rebuild_s"], "b_s": b_s, "c_s": c_s, "c_chunk": c_chunk,
               "mem_pass_s": mem, "mem_gbps": 4 * d / mem / 1e9, "a_geps": 2 * K * d / a["a_s"] / 1e9,
               "b_project_geps": K * d / b["b_project_s"] / 1e9, "b_rebuild_geps": K * d / b["b_rebuild_s"] / 1e9,
               "c_geps": K * d / c_s / 1e9, "a_over_b": a["a_s"] / b_s, "b_over_c": b_s / (2 * c_s),
               "peak_extra_mb": b["peak_extra_mb"], "bound_mb": 4 * (2 * chunk + d) / 2**20,
               "a_peak_mb": a["a_peak_mb"],
               "f_project_s": f["b_project_s"], "f_rebuild_s": f["b_rebuild_s"],
               "f_project_geps": K * d / f["b_project_s"] / 1e9, "f_rebuild_geps": K * d / f["b_rebuild_s"] / 1e9,
               "f_project_over_b": b["b_project_s"] / f["b_project_s"],
               "f_rebuild_over_b": b["b_rebuild_s"] / f["b_rebuild_s"],
               "a_over_f": a["a_s"] / (f["b_project_s"] + f["b_rebuild_s"]),
               "f_peak_extra_mb": f["peak_extra_mb"], "lane_gops": lane_rate / 1e9}
        # per pass: one read of d floats or the arithmetic of K x d entries, whichever is longer
        row["floor_s"] = max(mem, sum(floor.floor_seconds(basis, n, K, lane_rate, 0.0) for n in sizes))
        row["floor_geps"] = K * d / row["floor_s"] / 1e9
        row["f_over_floor"] = max(f["b_project_s"], f["b_rebuild_s"]) / row["floor_s"]
        row["mem_ok"] = bool(row["peak_extra_mb"] < row["bound_mb"]) if math.isfinite(row["peak_extra_mb"]) else None
        if basis == "trunc_normal":  # the official law: must agree with (a)
            row["agree"], row["agree_z"] = agreement(za, _normalised(b["coords"], blocks), a["rho"], b["rho"],
                                                     max(sizes))
        else:
            row["agree"], row["agree_z"] = "n/a (other law)", math.nan
        rows.append(row)
    return rows


def run_grid(ds: list[int], Ks: list[int], bases: list[str], budget_s: float, official_s: float,
             chunk: int, device: torch.device, repeats: int = 3, log=print) -> list[dict[str, Any]]:
    """Every grid point, cheapest first, skipping those predicted to overrun the budget."""
    t0 = time.perf_counter()
    rates = calibrate(bases, device, chunk)
    lane_rate = floor.lane_op_rate(device)
    points = sorted(((d, K) for d in ds for K in Ks),
                    key=lambda p: predicted_seconds(*p, bases, rates, official_s, repeats))
    rows: list[dict[str, Any]] = []
    for d, K in points:
        left = budget_s - (time.perf_counter() - t0)
        need = predicted_seconds(d, K, bases, rates, official_s, repeats)
        if need > left:
            rows += [{"d": d, "K": K, "basis": b, "status": f"skipped: predicted {need:.0f} s > {max(left, 0):.0f} s "
                      "of budget left"} for b in bases]
            log(f"bench projection: d={d:.0e} K={K}: skipped (predicted {need:.0f} s, {max(left, 0):.0f} s left)")
            continue
        point = measure_point(d, K, bases, device, chunk, official_s, rates.official, repeats, lane_rate)
        for row in point:  # the start-up rates come from a small problem: learn the real ones
            rates.ours[row["basis"]] = 2 * K * d / row["b_s"]
        rates.official = point[0]["a_geps"] * 1e9  # (a) is measured once per point
        rows += point
        log(f"bench projection: d={d:.0e} K={K}: done ({time.perf_counter() - t0:.0f} s so far)")
    return sorted(rows, key=lambda r: (r["d"], r["K"], bases.index(r["basis"])))


def machine(device: torch.device) -> str:
    """One line naming the hardware the numbers were measured on."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
