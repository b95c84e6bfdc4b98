"""ferret bench: the official reference loop, the agreement check, the grid's arithmetic and
budget, the outputs and the CLI, at tiny sizes (d ~ 1e4, K ~ 8)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from conftest import count_generated_entries

from ferret.bench import cost, floor
from ferret.bench import projection as B
from ferret.bench.official import official_project, official_rebuild
from ferret.bench.report import projection_figure, write_table
from ferret.cli import main

CPU = torch.device("cpu")


@pytest.mark.parametrize("d", [10_000, 123_457, 10_000_000])
def test_model_shapes_sum_to_d_and_group_into_blocks(d):
    sizes = B.model_shapes(d)
    assert sum(sizes) == d and min(sizes) > 0
    blocks = B.block_sizes(d)
    assert sum(blocks) == d and 1 < len(blocks) < len(sizes)


def test_official_loop_is_the_per_seed_trunc_normal_dot_product():
    x = torch.randn(3000)
    coords = official_project([x], [7, 8])
    torch.manual_seed(7)
    v = torch.nn.init.trunc_normal_(torch.empty(3000), 0.0, 1.0, -3000**-0.5, 3000**-0.5)
    assert coords[0, 0].item() == pytest.approx(float(x @ v), rel=1e-5)
    out = torch.zeros(3000)
    official_rebuild(torch.tensor([[2.0], [0.0]]), [7, 8], [out])
    torch.testing.assert_close(out, -2.0 * v)


def _coords_and_energy(blocks, K, basis):
    seeds = torch.arange(1, K + 1)
    b = B._ours(blocks, seeds, basis, 1 << 16, CPU)
    return B._normalised(b["coords"], blocks), b["rho"]


def test_agreement_holds_for_the_same_law_and_fails_when_bases_differ():
    torch.manual_seed(0)
    d, K = 20_000, 8
    sizes = B.block_sizes(d)
    blocks = list(torch.randn(d).split(sizes))
    a = B._official(blocks, K, budget_s=60, rate=1e9, device=CPU)
    za = B._normalised(a["coords"], blocks)
    z_same, rho_same = _coords_and_energy(blocks, K, "trunc_normal")
    assert B.agreement(za, z_same, a["rho"], rho_same, max(sizes))[0]
    for other in ("rademacher", "uniform"):  # variance 1/d, three times the official 1/(3d)
        z_other, rho_other = _coords_and_energy(blocks, K, other)
        ok, z = B.agreement(za, z_other, a["rho"], rho_other, max(sizes))
        assert not ok and z > 4


def test_grid_rows_are_consistent_with_their_timings():
    rows = B.measure_point(10_000, 8, ["rademacher", "trunc_normal"], CPU, 1 << 16, official_s=60, rate_official=1e9,
                           lane_rate=1e10)
    assert [r["basis"] for r in rows] == ["rademacher", "trunc_normal"]
    for r in rows:
        arithmetic = sum(8 * n * floor.ops_per_entry(r["basis"], n) for n in B.block_sizes(10_000)) / 1e10
        assert r["floor_s"] == pytest.approx(max(r["mem_pass_s"], arithmetic))
        assert r["f_over_floor"] == pytest.approx(max(r["f_project_s"], r["f_rebuild_s"]) / r["floor_s"])
        assert r["a_seeds"] == 8  # the whole official loop fits the allowance here
        assert r["b_s"] == pytest.approx(r["b_project_s"] + r["b_rebuild_s"])
        assert r["a_over_b"] == pytest.approx(r["a_s"] / r["b_s"])
        assert r["b_over_c"] == pytest.approx(r["b_s"] / (2 * r["c_s"]))
        assert r["b_project_geps"] == pytest.approx(8 * 10_000 / r["b_project_s"] / 1e9)
        assert r["bound_mb"] == pytest.approx(4 * (2 * (1 << 16) + 10_000) / 2**20)
        assert r["c_chunk"] in ((1 << 16) // 4, 1 << 16, (1 << 16) * 4)
    assert rows[1]["agree"] is True and rows[0]["agree"].startswith("n/a")


def test_official_time_is_scaled_from_the_seeds_it_timed():
    blocks = list(torch.randn(10_000).split(B.block_sizes(10_000)))
    a = B._official(blocks, 64, budget_s=1e-9, rate=1e9, device=CPU)
    assert a["a_seeds"] == 1 and a["coords"].shape[0] == 1


def test_budget_skips_points_predicted_to_overrun(tmp_path):
    # The budget counts from the start, so it includes calibration and the floor kernel's build (tens
    # of seconds on a loaded 2-core machine): generous for d = 1e4, hopeless for d = 1e13 (never
    # allocated: a skipped point is only predicted).
    rows = B.run_grid([10_000, 10**13], [8], ["rademacher"], budget_s=900, official_s=0.5, chunk=1 << 16,
                      device=CPU, log=lambda _: None)
    by_d = {r["d"]: r for r in rows}
    assert by_d[10_000]["status"] == "ok"
    assert by_d[10**13]["status"].startswith("skipped: predicted")
    paths = write_table(rows, B.COLUMNS, tmp_path, "projection", ["# title", "- machine: x"])
    df = pd.read_csv(tmp_path / "projection.csv")
    assert list(df.columns) == B.COLUMNS and len(df) == 2
    md = (tmp_path / "projection.md").read_text()
    assert md.startswith("# title") and "skipped: predicted" in md and len(paths) == 2
    figs = projection_figure(rows, tmp_path)
    assert all(p.stat().st_size > 0 for p in figs)


def test_server_cost_is_one_rebuild_whatever_the_client_count(monkeypatch):
    rows = cost.server_cost(20_000, 8, [1, 6], "rademacher", CPU, distinct=2, repeats=1)
    assert [r["clients"] for r in rows] == [1, 6]
    assert rows[1]["ratio_to_first"] == pytest.approx(rows[1]["server_s"] / rows[0]["server_s"])
    generated = count_generated_entries(monkeypatch)  # the fused kernels' entries too
    cost.server_cost(20_000, 8, [1, 6], "rademacher", CPU, distinct=2, repeats=1)
    assert generated["entries"] > 0
    # 2 encodes (at most K x d each) + a warm-up rebuild + one rebuild per client count (K x d each)
    assert generated["entries"] <= 5 * 8 * 20_000


def test_model_overhead_reports_the_fraction_of_local_compute():
    row = cost.model_overhead(200_000, 8, 2, "rademacher", CPU, batch_size=2, seq_len=16)
    assert row["overhead"] == pytest.approx((row["t_encode_s"] + row["t_rebuild_s"]) / row["t_local_s"])
    assert row["t_local_s"] > 0 and row["d"] > 0


def test_cli_writes_the_table_and_figure_and_rejects_bad_values(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "sentinel-secret-0123456789")  # the Host holds it, to redact
    rc = main(["bench", "projection", "--d", "1e4", "--K", "8", "--bases", "rademacher", "--threads", "1",
               "--official-s", "0.5", "--out", str(tmp_path / "r"), "--figures", str(tmp_path / "f")])
    assert rc == 0
    assert (tmp_path / "r" / "projection.csv").is_file() and (tmp_path / "f" / "bench_projection.png").is_file()
    md = (tmp_path / "r" / "projection.md").read_text()
    command = next(line for line in md.splitlines() if line.startswith("- command:"))
    assert "ferret --resources" in command and " bench projection " in command
    assert "sentinel-secret" not in md and "--host" not in command  # the environment stays out
    assert main(["bench", "projection", "--K", "8,x"]) == 2
    assert "8,x" in capsys.readouterr().err
    assert main(["bench", "projection", "--bases", "sobol"]) == 2
    assert math.isfinite(pd.read_csv(tmp_path / "r" / "projection.csv")["b_s"].iloc[0])


def test_floor_counts_the_hash_once_per_word_and_the_cubic_term_only_where_kept():
    assert floor.ops_per_entry("rademacher", 10**7) == pytest.approx(3 + 22 / 64)
    assert floor.ops_per_entry("uniform", 3000) == pytest.approx(3 + 11)
    assert floor.ops_per_entry("trunc_normal", 3000) == pytest.approx(6 + 11)  # cubic kept (d < ~5.6e6)
    assert floor.ops_per_entry("trunc_normal", 10**7) == pytest.approx(3 + 11)
    assert floor.floor_seconds("rademacher", 1000, 64, 1e9, mem_read_s=1.0) == 1.0  # memory-bound
    assert floor.floor_seconds("rademacher", 1000, 64, 1e9, 0.0) == pytest.approx(64 * 1000 * (3 + 22 / 64) / 1e9)


def test_cpu_lane_op_rate_is_a_plausible_rate():
    threads = torch.get_num_threads()
    rate = floor.lane_op_rate(CPU, iters=2_000_000)
    assert 1e8 < rate < 1e14, rate  # between a slow core and far beyond any CPU
    assert torch.get_num_threads() == threads  # measured on one thread, then restored
