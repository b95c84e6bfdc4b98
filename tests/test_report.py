"""Tables and figures from the fixture all_runs.csv: the numbers, not just the files."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.colors as mcolors
import pandas as pd
import pytest

from ferret.report import claims, figures, runs, tables

FIXTURE = Path(__file__).parent / "fixtures" / "all_runs.csv"
PAPER_RUNS = Path(__file__).parent / "fixtures" / "paper_runs.csv"
REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
MAIN = "ferret (K=64, num_clients=12)"
SETTING = "synthetic / smollm2-135m"
ROUGE, LOSS, PAPER = (f"{SETTING}: {c}" for c in ("Rouge-L (%)", "eval loss", "paper Rouge-L (%)"))


@pytest.fixture(scope="module")
def df():
    return pd.read_csv(FIXTURE)


def test_labels_show_only_the_axes_a_method_varies(df):
    labels = set(runs.with_labels(df)["label"])
    assert labels == {MAIN, "ferret (K=16, num_clients=12)", "ferret (K=64, num_clients=6)", "fedavg"}


def test_main_table_is_final_rouge_mean_std_over_seeds(df):
    t = tables.main_table(df)
    assert t.loc[MAIN, ROUGE] == "35.0 ± 7.1 (n = 2)"  # seeds 0.30, 0.40
    assert t.loc["fedavg", ROUGE] == "37.0 ± 1.4 (n = 2)"  # seeds 0.36, 0.38
    assert t.loc["ferret (K=16, num_clients=12)", ROUGE] == "20.0 (n = 1)"


def test_main_table_has_final_eval_loss_mean_std_beside_rouge(df):
    t = tables.main_table(df)
    # the paper did not run the synthetic set: no paper column; no per-example scores: no paired columns
    # (the fixture predates the official metric: rouge-score's Rouge-L only)
    assert list(t.columns) == [ROUGE, f"{SETTING}: Rouge-L (%) 95% interval",
                               LOSS, f"{SETTING}: eval loss 95% interval"]
    final = runs.final_rows(df)
    fedavg = final[final["method"] == "fedavg"]["eval_loss"]
    assert t.loc["fedavg", LOSS] == f"{fedavg.mean():.3f} ± {fedavg.std():.3f} (n = 2)"
    assert t.loc["ferret (K=16, num_clients=12)", LOSS] == "2.100 (n = 1)"
    # two seeds: their range, not a t interval (which would be 12.7 standard errors wide)
    assert t.loc["fedavg", f"{SETTING}: eval loss 95% interval"] == (
        f"range [{fedavg.min():.3f}, {fedavg.max():.3f}] (n = 2)")
    assert t.loc[MAIN, f"{SETTING}: Rouge-L (%) 95% interval"] == "range [30.0, 40.0] (n = 2)"
    assert t.loc["ferret (K=16, num_clients=12)", f"{SETTING}: Rouge-L (%) 95% interval"] == "– (n = 1)"


def test_main_table_shows_the_papers_rouge_when_the_reference_has_it(df, tmp_path):
    assert PAPER not in tables.main_table(df)  # no reference for the synthetic set
    (tmp_path / "table2_rouge_l.csv").write_text(
        "dataset,model,method,rouge_l_mean,rouge_l_std,source\n"
        "synthetic,smollm2-135m,fedavg,31.5,0.8,test\nsynthetic,smollm2-135m,ferret,,,test\n")
    t = tables.main_table(df, reference=tmp_path)
    assert t.loc["fedavg", PAPER] == "31.5 ± 0.8"
    assert t.loc[MAIN, PAPER] == "n/a"  # listed but not retrieved


@pytest.fixture(scope="module")
def paper_df():
    # The paper comparisons read the official metric; here it equals the fixture's Rouge-L.
    return pd.read_csv(PAPER_RUNS).assign(rouge_l_official=lambda d: d["rouge_l"])


def test_reference_claims_hold_the_headline_ratios_with_sources():
    table, table1 = runs.read_reference(REFERENCE)
    by_claim = table.set_index(["claim", "baseline"])
    assert float(by_claim.loc[("computation", "fedkseed"), "paper_value"]) == pytest.approx(6.0)
    assert float(by_claim.loc[("rounds", "fedkseed"), "paper_value"]) == pytest.approx(3.3)
    assert by_claim.loc[("communication", "fedavg"), "paper_value"] == "10^6"
    assert "comparable" in by_claim.loc[("score", "fedkseed"), "definition"]
    assert by_claim.index.is_unique  # one row per (claim, baseline)
    # the rows whose ratio the paper does not print carry both of its absolute numbers instead
    unprinted = table[table["paper_value"].isna()]
    assert set(zip(unprinted["claim"], unprinted["baseline"])) == {
        ("local", "fedzo"), ("aggregation", "fedzo"), ("computation", "fedzo"), ("score", "fedkseed"),
        ("score", "fedavg")}
    assert unprinted["paper_ferret_abs"].notna().all() and unprinted["paper_baseline_abs"].notna().all()
    assert table["source"].str.contains(r"(?:Table|Figure) \d").all()  # every claim names where it was read
    assert set(table["claim"]) == set(claims.MEASURES)  # every claim is measured from our runs
    assert {"dataset", "model", "method", "rouge_l_mean"} <= set(table1.columns)


MEASURED = "measured (paired by seed)"


def test_claims_table_puts_the_papers_claims_beside_our_ratios(paper_df):
    t = claims.claims_table(paper_df, reference=REFERENCE)
    assert set(t["setting"]) == {"natural-instructions / datajuicer-1.3b"}
    # fixture: FedKSeed 18 s local + 1 s aggregation vs Ferret 3 s + 1 s per client per round in
    # both seeds (App. C.2's overall seconds); 2e9 vs 2,000 bytes; both run 4 rounds (rounds are
    # counted as run, as in Fig. 1); Rouge-L 41 vs 40. The slow Ferret K=50 ablation run is not
    # Ferret's main configuration. Equal seeds: an exact ratio, no interval, and it decides.
    assert t.loc["computation vs fedkseed", "paper"] == "6.0×"
    assert t.loc["computation vs fedkseed", MEASURED] == "4.8× (exact, n = 2)"
    assert t.loc["computation vs fedkseed", "direction holds"] == "yes (exact: the same in every seed)"
    assert t.loc["local vs fedkseed", MEASURED].startswith("6.0× ")
    assert t.loc["aggregation vs fedkseed", MEASURED].startswith("1.0× ")
    assert t.loc["aggregation vs fedkseed", "direction holds"] == "no: equal (exact: the same in every seed)"
    assert (t.loc["rounds vs fedkseed", "paper"], t.loc["rounds vs fedkseed", MEASURED]) == (
        "3.3×", "1.0× (exact, n = 2)")
    assert t.loc["rounds vs fedkseed", "direction holds"].startswith("not tested")
    assert t.loc["communication vs fedavg", "paper"] == "1.0e+06×"
    assert t.loc["communication vs fedavg", MEASURED] == "1.0e+06× (n = 1)"  # FedAvg ran one seed here
    assert t.loc["communication vs fedavg", "direction holds"] == "yes (one seed, no interval)"
    assert t.loc["score vs fedkseed", MEASURED].startswith("+1.0 pts")
    assert (t.loc["score vs fedkseed", "paper"], t.loc["score vs fedkseed", "paper baseline"],  # Fig. 1
            t.loc["score vs fedkseed", "paper Ferret"]) == ("comparable (+0.3 pts, from its numbers)", 29.77, 30.03)
    # no ratio printed: derived from Table 4's seconds (32.9 / 30.3) and said so
    assert t.loc["computation vs fedzo", "paper"] == "(1.1×, from its numbers)"
    assert t.loc["computation vs fedzo", MEASURED] == "–"  # no FedZO run in the fixture
    assert t.loc["score vs fedavg", "paper"] == "comparable (-2.1 pts, from its numbers)"  # 30.03 - 32.11


def test_claims_without_the_baselines_runs_are_left_open(df):
    t = claims.claims_table(df, reference=REFERENCE)  # no FedKSeed in this fixture
    assert t.loc["computation vs fedkseed", MEASURED] == "–" and t.loc["rounds vs fedkseed", MEASURED] == "–"
    assert t.loc["communication vs fedavg", MEASURED] != "–"  # FedAvg and Ferret both ran


def test_main_config_is_the_one_with_most_runs(paper_df):
    runs_ = runs.main_config_runs(paper_df, "ferret")
    assert set(runs_["K"]) == {200} and runs_["run_id"].nunique() == 2


def test_cost_table_per_client_per_round_and_rounds_to_target(df):
    cost, target = tables.cost_table(df)
    assert target == pytest.approx(2.1)  # highest mean final eval loss (the K=16 run)
    row = cost.loc[MAIN]
    assert row["local s/client/round"] == pytest.approx(21.0)  # 40/2 and 44/2
    assert row["encode s/client/round"] == pytest.approx(5.0)
    assert row["aggregate s/round"] == pytest.approx(2.5)
    assert row["uplink B/client/round"] == pytest.approx(1100)
    assert row["downlink B/client/round"] == pytest.approx(600)
    assert row["total bytes"] == pytest.approx((6000 + 7600) / 2)
    col = "rounds to eval loss ≤ 2.100"
    assert cost.loc[MAIN, col] == pytest.approx(1.5)  # seed 0 at round 1, seed 1 at round 2
    assert cost.loc["fedavg", col] == pytest.approx(1.0)
    assert cost.loc["ferret (K=16, num_clients=12)", col] == pytest.approx(2.0)


def test_rounds_to_target_is_missing_unless_every_seed_reaches_it(df):
    cost, _ = tables.cost_table(df, target_loss=1.5)
    col = "rounds to eval loss ≤ 1.500"
    assert math.isnan(cost.loc[MAIN, col])  # seed 1 ends at 1.7
    assert math.isnan(cost.loc["fedavg", col])  # seed 1 ends at 1.6
    cost, _ = tables.cost_table(df, target_loss=1.8)
    assert cost.loc["fedavg", "rounds to eval loss ≤ 1.800"] == pytest.approx(1.5)


def test_written_tables_hold_the_numbers(df, tmp_path):
    tables.write_tables(df, tmp_path, reference=REFERENCE)
    claims_md = (tmp_path / "claims.md").read_text()
    assert "6.0×" in claims_md and "1.0e+06×" in claims_md and (tmp_path / "claims.tex").stat().st_size > 0
    main_md = (tmp_path / "main.md").read_text()
    assert "35.0 ± 7.1 (n = 2)" in main_md and "37.0 ± 1.4 (n = 2)" in main_md
    assert "\\begin{table}" in (tmp_path / "main.tex").read_text()
    cost_md = (tmp_path / "cost.md").read_text()
    assert "21.000" in cost_md and "5e+05" in cost_md  # FedAvg's 500000 B per client
    assert (tmp_path / "cost.tex").stat().st_size > 0


def _lines(fig, ax=0):
    """The labelled lines of a panel (the per-seed traces are unlabelled)."""
    return {line.get_label(): line for line in fig.axes[ax].lines if not line.get_label().startswith("_")}


def test_convergence_figure_plots_the_seed_mean(df):
    fig = figures.convergence_round(df)
    lines = _lines(fig)
    mains = pd.concat([runs.main_config_runs(df, m) for m in df["method"].unique()])
    assert set(lines) == set(runs.with_labels(mains)["label"])  # one line per method; ablations elsewhere
    assert len(lines) == df["method"].nunique()
    assert list(lines["fedavg"].get_ydata()) == pytest.approx([3.0, 1.85, 1.5])
    assert list(lines["fedavg"].get_xdata()) == [0, 1, 2]


def test_bytes_figure_uses_cumulative_bytes_on_a_log_axis(df):
    fig = figures.convergence_bytes(df)
    assert fig.axes[0].get_xscale() == "log"
    fedavg = _lines(fig)["fedavg"]
    assert list(fedavg.get_xdata()) == pytest.approx([2e6, 4e6])  # 2 clients x (up + down), from round 1


def test_ablation_figures_hold_the_other_axis_at_the_main_value(df):
    k = figures.ablation_k(df)
    line = k.axes[0].lines[0]
    assert list(line.get_xdata()) == [16, 64]
    assert list(line.get_ydata()) == pytest.approx([2.1, 1.6])  # N = 12 only
    n = figures.ablation_clients(df)
    line = n.axes[0].lines[0]
    assert list(line.get_xdata()) == [6, 12]
    assert list(line.get_ydata()) == pytest.approx([1.9, 1.6])  # K = 64 only


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_every_figure_is_written_as_png_and_pdf(df, tmp_path, name):
    paths = figures.write_figure(df, name, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_seeds_are_drawn_as_thin_lines_in_their_method_colour(df):
    fig = figures.convergence_round(df)
    ax = fig.axes[0]
    fedavg = _lines(fig)["fedavg"]
    assert not [c for c in ax.collections if type(c).__name__ == "PolyCollection"]  # no t band from 2 seeds
    seeds = [ln for ln in ax.lines if ln.get_label() == "_seed"
             and mcolors.to_hex(ln.get_color()) == mcolors.to_hex(fedavg.get_color())]
    assert len(seeds) == 2 and all(ln.get_linewidth() < fedavg.get_linewidth() for ln in seeds)
    final = runs.final_rows(df)
    assert sorted(ln.get_ydata()[-1] for ln in seeds) == sorted(final[final["method"] == "fedavg"]["eval_loss"])
