"""Claims and budget tables (ferret/report/claims.py) on a fixture all_runs.csv written here; every
expected number is recomputed in the test from the fixture's own arrays (scipy for the t quantiles):
ratios and positive quantities on the log scale, exact values where nothing varies by seed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ferret.report import claims

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
SEEDS = (0, 1, 2)
# method -> (local s per client per round as a function of the seed, aggregation s, eval loss per round)
PLAN = {
    "ferret": (lambda s: 10.0 + s, 1.0, [3.0, 2.4, 2.0, 1.8]),
    "fedkseed": (lambda s: 40.0 + 7.0 * s * s, 20.0, [3.0, 2.9, 2.8, 2.7]),
    "fedzo": (lambda s: 30.0 + 3.0 * s, 0.1, [3.0, 2.5, 2.3, 2.2]),
    "fedavg": (lambda s: 2.0, 0.5, [3.0, 2.2, 1.9, 1.7]),
}


def _interval(values) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=float)
    half = st.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def _log_interval(values) -> tuple[float, float, float]:
    """Arithmetic mean and the t interval of the logs, transformed back (a positive quantity)."""
    _, low, high = _interval(np.log(values))
    return float(np.mean(values)), math.exp(low), math.exp(high)


def _ratio_interval(ratios) -> tuple[float, float, float]:
    """Geometric mean of the ratios and the t interval of their logs, transformed back."""
    mean, low, high = _interval(np.log(ratios))
    return math.exp(mean), math.exp(low), math.exp(high)


@pytest.fixture
def runs(tmp_path) -> pd.DataFrame:
    rows = []
    for method, (local, aggregation, losses) in PLAN.items():
        for s in SEEDS:
            grid = {"run_id": f"{method}_s{s}", "method": method, "dataset": "synthetic", "model": "tiny",
                    "K": 200, "num_clients": 12, "seed": s, "status": "ok"}
            for r, loss in enumerate(losses):
                rows.append({**grid, "round": r, "clients": 1 if r else 0, "eval_loss": loss + 0.01 * s,
                             "rouge_l_official": ((0.30 + 0.01 * s + (0.02 if method == "ferret" else 0.0))
                                                  if r == 3 else 0.1),
                             # rouge-score's Rouge-L says the opposite: the claims must not read it
                             "rouge_l": (0.30 - (0.02 if method == "ferret" else 0.0)) if r == 3 else 0.1,
                             "t_local_s": 0.8 * local(s) if r else None, "t_encode_s": 0.2 * local(s) if r else None,
                             "t_aggregate_s": aggregation if r else None,
                             "uplink_bytes_per_client": 100.0 if r else None,
                             "downlink_bytes_per_client": 100.0 if r else None})
    pd.DataFrame(rows).to_csv(tmp_path / "all_runs.csv", index=False)
    return pd.read_csv(tmp_path / "all_runs.csv")


def _overall(method: str, s: int) -> float:
    local, aggregation, _ = PLAN[method]
    return local(s) + aggregation


def test_ratios_are_paired_by_seed_on_the_log_scale(runs):
    t = claims.claims_table(runs, reference=REFERENCE)
    mean, low, high = _ratio_interval([_overall("fedkseed", s) / _overall("ferret", s) for s in SEEDS])
    cell = t.loc["computation vs fedkseed", "measured (paired by seed)"]
    assert cell == f"{mean:.1f}× [{low:.1f}×, {high:.1f}×] (n = 3)" and low > 0
    assert t.loc["computation vs fedkseed", "direction holds"] == (
        "yes" if low > 1 else "not resolved: the interval includes 1×")
    # FedZO aggregates a dense average (0.1 s) faster than Ferret rebuilds (1 s): the paper's Table 4
    # says so too (0.3 vs 24.7 s), so "holds" means below 1x here
    assert t.loc["aggregation vs fedzo", "measured (paired by seed)"].startswith("0.1× ")
    assert t.loc["aggregation vs fedzo", "direction holds"] == "yes (exact: the same in every seed)"  # 0.1 / 1 s
    assert t.loc["aggregation vs fedzo", "paper"] == f"({0.3 / 24.7:.3g}×, from its numbers)"


def test_score_difference_is_paired_by_seed(runs):
    t = claims.claims_table(runs, reference=REFERENCE)
    cell = t.loc["score vs fedavg", "measured (paired by seed)"]
    assert cell.startswith("+2.0 pts")  # Ferret's official Rouge-L is 2 points above FedAvg's in every seed
    # the same +2 points in every seed: exact, decided without an interval
    assert t.loc["score vs fedavg", "direction holds"] == "yes (Ferret higher) (exact: the same in every seed)"


def test_fixed_size_messages_resolve_communication_exactly(runs):
    t = claims.claims_table(runs, reference=REFERENCE)
    # 100 B up and 100 B down in every round of every method: the ratio is exactly 1 in every seed
    assert t.loc["communication vs fedavg", "measured (paired by seed)"] == "1.0× (exact, n = 3)"
    assert t.loc["communication vs fedavg", "direction holds"] == "no: equal (exact: the same in every seed)"
    bigger = runs.copy()
    fedavg = bigger["method"] == "fedavg"
    bigger.loc[fedavg, ["uplink_bytes_per_client", "downlink_bytes_per_client"]] *= 7.8e4
    t = claims.claims_table(bigger, reference=REFERENCE)
    assert t.loc["communication vs fedavg", "measured (paired by seed)"] == "7.8e+04× (exact, n = 3)"
    assert t.loc["communication vs fedavg", "direction holds"] == "yes (exact: the same in every seed)"


def test_two_seeds_decide_only_when_both_agree():
    agree = claims.paired(pd.Series([5.0, 7.0]), pd.Series([1.0, 1.0]), ratio=True)
    assert agree.kind == "range" and (agree.low, agree.high) == (pytest.approx(5.0), pytest.approx(7.0))
    assert claims.direction(True, 6.0, agree) == "yes (every seed, n = 2; no interval)"
    disagree = claims.paired(pd.Series([0.5, 3.0]), pd.Series([1.0, 1.0]), ratio=True)
    assert claims.direction(True, 6.0, disagree) == "not resolved: the seeds disagree (n = 2)"


def test_a_comparable_score_needs_a_narrow_interval():
    narrow = claims.paired(pd.Series([30.0, 31.0, 29.0]), pd.Series([30.5, 30.0, 30.0]), ratio=False)
    wide = claims.paired(pd.Series([10.0, 50.0, 30.0]), pd.Series([30.0, 30.0, 30.0]), ratio=False)
    assert narrow.low < 0 < narrow.high
    assert narrow.low >= -claims.COMPARABLE_PTS and narrow.high <= claims.COMPARABLE_PTS
    assert claims.direction(False, math.nan, narrow).startswith("yes (within")
    assert wide.low < -claims.COMPARABLE_PTS
    assert claims.direction(False, math.nan, wide).startswith("not resolved")


def test_an_interval_across_one_is_not_resolved():
    iv = claims.paired(pd.Series([2.0, 0.5, 3.0]), pd.Series([1.0, 1.0, 1.0]), ratio=True)
    assert iv.low < 1 < iv.high
    assert claims.direction(True, 6.0, iv).startswith("not resolved")
    assert claims.direction(True, 6.0, claims.paired(pd.Series([0.5, 0.4]), pd.Series([1.0, 1.0]), True)) \
        .startswith("no")


def _target() -> float:
    untuned = 3.0 + 0.01 * np.mean(SEEDS)
    best = min(losses[-1] + 0.01 * np.mean(SEEDS) for _, _, losses in PLAN.values())
    return untuned - 0.5 * (untuned - best)


def _first_round(method: str, s: int, target: float) -> int | None:
    hits = [r for r, loss in enumerate(PLAN[method][2]) if loss + 0.01 * s <= target]
    return hits[0] if hits else None


def test_cost_to_target_and_quality_under_budget(runs):
    table, note = claims.budget_table(runs)
    t = table.set_index("method")
    target = _target()
    assert f"target eval loss {target:.3f}" in note
    # Ferret: rounds and cumulative compute seconds to the target, seed by seed
    rounds = [_first_round("ferret", s, target) for s in SEEDS]
    seconds = [r * _overall("ferret", s) for r, s in zip(rounds, SEEDS)]
    mean, low, high = _log_interval(seconds)
    assert t.loc["ferret", "compute s to target"] == f"{mean:.3g} [{low:.3g}, {high:.3g}] (n = 3)"
    assert t.loc["ferret", "reached target"] == "3 of 3"
    # FedKSeed never gets there (2.7 > target): a lower bound from what it spent, not a ratio
    assert all(_first_round("fedkseed", s, target) is None for s in SEEDS)
    bound = min(3 * _overall("fedkseed", s) / sec for s, sec in zip(SEEDS, seconds))
    assert t.loc["fedkseed", "compute to target ÷ Ferret"] == f"> {bound:.1f}× (3 of 3 seeds not reached)"
    assert t.loc["fedkseed", "reached target"] == "0 of 3"
    # within Ferret's budget (its whole run, mean over seeds) FedKSeed has finished no round in any seed
    budget = np.mean([3 * _overall("ferret", s) for s in SEEDS])
    assert f"budget {budget:.0f} s" in note
    within = [PLAN["fedkseed"][2][int(budget // _overall("fedkseed", s))] + 0.01 * s for s in SEEDS]
    mean, low, high = _log_interval(within)
    assert t.loc["fedkseed", "eval loss within budget"] == f"{mean:.3g} [{low:.3g}, {high:.3g}] (n = 3)"
    # FedAvg's run ends long before the budget: flagged, its final loss counts
    assert t.loc["fedavg", "run ended before the budget"] == "yes"
    assert t.loc["fedavg", "eval loss within budget"].startswith(f"{1.7 + 0.01:.3g} ")
    # Ferret's own seeds are cut at the mean budget too: seed 2's run (3 x 15 s) is longer than it
    ferret_within = [PLAN["ferret"][2][min(3, int(budget // _overall("ferret", s)))] + 0.01 * s for s in SEEDS]
    assert int(budget // _overall("ferret", 2)) == 2
    diffs = [PLAN["fedavg"][2][-1] + 0.01 * s - f for s, f in zip(SEEDS, ferret_within)]
    mean, low, high = _interval(diffs)
    assert t.loc["fedavg", "Δ loss vs Ferret (paired by seed)"] == f"{mean:+.3f} [{low:+.3f}, {high:+.3f}] (n = 3)"


def test_rounds_to_target_row_in_the_claims_table(runs):
    t = claims.claims_table(runs, reference=REFERENCE)
    row = t.loc["rounds to target vs fedkseed"]
    assert row["measured (paired by seed)"].startswith("> ")  # FedKSeed never reaches the common target
    assert row["direction holds"] == "yes (lower bound)"
