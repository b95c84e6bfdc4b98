"""The paper's headline claims checked on our runs, and what each method's compute buys.

* :func:`claims_table`: one row per claim of ``results/reference/claims.csv`` (Fig. 1, App. C.2:
  ≈ 6.0× less computation than FedKSeed, 10.2× local, 5.0× aggregation, 3.3× fewer rounds, 10^6×
  less communication than FedAvg, a comparable score; and Table 4's FedZO seconds and Table 2's
  FedAvg score, whose ratios the paper does not print and the table derives from its two numbers;
  the score is Rouge-L by the paper's own metric, paper.PAPER_METRIC) per data set / model: both
  sides' absolute numbers (mean with the interval of ferret/report/stats.py over seeds, n), the
  ratio baseline / Ferret (difference Ferret − baseline for the
  score) *paired by seed* (seed s of both methods shares client sampling and data order), and
  whether the direction holds. Ratios of costs are taken on the log scale (geometric mean of the
  per-seed ratios, Student-t interval of the log ratios transformed back, so it is > 0); a ratio
  that is the same in every seed (bytes of fixed-size messages) is exact and decides alone; with
  fewer than three seeds the cell shows every seed's range and the direction must hold in each.
  A direction "holds" when the interval lies on the paper's side of 1; the score's "comparable"
  holds when Ferret is higher or the interval lies within ±COMPARABLE_PTS; an interval across 1
  (or a wide one across 0), or seeds that disagree, is "not resolved", never counted as holding.
* :func:`budget_table`: cost to target and quality under budget. Per method: the rounds and the
  cumulative compute seconds (runs.with_compute_clock: overall seconds per client, summed over
  rounds) to reach a common eval loss, and the eval loss reached within a common compute budget.
  The target is half-way from the untuned model's loss to the best method's mean final loss, so
  it asks for real progress (a method that does not get there says "not reached" with what it
  spent, and its ratio is a lower bound); the budget is Ferret's whole run.

A method's runs are those of its main configuration (runs.main_config_runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ferret.report import stats
from ferret.report.paper import PAPER_METRIC
from ferret.report.runs import (
    final_rows,
    finished,
    main_config_runs,
    read_reference,
    round_costs,
    rounds_to_target,
    with_compute_clock,
)

Quantity = Callable[[pd.DataFrame], float]


def _overall_s(run: pd.DataFrame) -> float:
    return float(round_costs(run)["overall_s"].mean())


def _local_s(run: pd.DataFrame) -> float:
    return float(round_costs(run)["local_s"].mean())


def _aggregation_s(run: pd.DataFrame) -> float:
    return float(round_costs(run)["aggregation_s"].mean())


def _params_per_round(run: pd.DataFrame) -> float:
    return float(round_costs(run)["params16"].mean())


def _rounds_run(run: pd.DataFrame) -> float:
    return float(run["round"].max())  # Fig. 1 / App. C.2 count the rounds RUN, not rounds to a target


def _final_loss(run: pd.DataFrame) -> float:
    return float(final_rows(run)["eval_loss"].iloc[0])


def _final_rouge(run: pd.DataFrame) -> float:
    """Final Rouge-L (%) by the paper's metric (paper.PAPER_METRIC), NaN for a run without it."""
    final = final_rows(run)
    return 100.0 * float(final[PAPER_METRIC].iloc[0]) if PAPER_METRIC in final else math.nan


# claim kind (claims.csv `claim`) -> (the per-run quantity by the paper's definition; True for a
# ratio baseline / Ferret, False for a difference Ferret - baseline)
MEASURES: dict[str, tuple[Quantity, bool]] = {
    "computation": (_overall_s, True),
    "local": (_local_s, True),
    "aggregation": (_aggregation_s, True),
    "rounds": (_rounds_run, True),
    "communication": (_params_per_round, True),
    "score": (_final_rouge, False),
}
# The range of each claim's per-run quantity (stats.Domain): costs are positive, the score a
# Rouge-L in %; its difference Ferret − baseline lies in ±100 points.
DOMAINS: dict[str, stats.Domain] = {"computation": stats.POSITIVE, "local": stats.POSITIVE,
                                    "aggregation": stats.POSITIVE, "rounds": stats.POSITIVE,
                                    "communication": stats.POSITIVE, "score": stats.PERCENT}
DIFFERENCE_DOMAIN = stats.PERCENT_DIFF  # the score's Ferret − baseline (the ratios are on the log scale)


def per_seed(runs: pd.DataFrame, quantity: Quantity) -> pd.Series:
    """``quantity`` of each finished run, indexed by seed (mean if a seed has several runs)."""
    runs = finished(runs)
    if runs.empty:
        return pd.Series(dtype=float)
    values = {run_id: (run["seed"].iloc[0], quantity(run)) for run_id, run in runs.groupby("run_id")}
    frame = pd.DataFrame(values.values(), columns=["seed", "value"])
    return frame.groupby("seed")["value"].mean()


def paired(base: pd.Series, ours: pd.Series, ratio: bool, domain: stats.Domain = stats.REAL) -> stats.Interval:
    """base / ours (or ours − base) seed by seed over the shared seeds: a ratio of positive costs on
    the log scale (stats.log_ratio: geometric mean, interval > 0, exact where no seed differs), a
    difference by stats.summary within ``domain``; without two shared seeds, the ratio
    (difference) of the means and no interval."""
    shared = base.index.intersection(ours.index)
    if ratio and ((base <= 0) | base.isna()).any() or ratio and ((ours <= 0) | ours.isna()).any():
        return stats.summary([])  # a ratio of costs needs positive costs on both sides
    if len(shared) >= 2:
        b, o = base[shared], ours[shared]
        return stats.log_ratio(b.tolist(), o.tolist()) if ratio else stats.summary((o - b).tolist(), domain)
    if base.empty or ours.empty:
        return stats.summary([])
    value = base.mean() / ours.mean() if ratio else ours.mean() - base.mean()
    return stats.summary([value])


def _times(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.1e}×" if abs(value) >= 1000 else f"{value:.3g}×" if abs(value) < 0.1 else f"{value:.1f}×"


def _points(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.1f} pts"


def _with_interval(iv: stats.Interval, show: Callable[[float], str]) -> str:
    return stats.format_interval(iv, show)


def _abs(iv: stats.Interval) -> str:
    return _with_interval(iv, lambda v: f"{v:.3g}")


def paper_value(claim: pd.Series) -> tuple[float, str]:
    """The paper's value of a claim and how to show it: as printed, or derived from its two
    absolute numbers where it prints none (said in the cell), or 'comparable' for the score."""
    _, ratio = MEASURES[claim["claim"]]
    show = _times if ratio else _points
    printed = claim.get("paper_value")
    if isinstance(printed, str) and printed.strip():
        value = float(printed.replace("10^", "1e"))
        return value, show(value)
    try:
        base, ferret = float(claim["paper_baseline_abs"]), float(claim["paper_ferret_abs"])
    except (KeyError, TypeError, ValueError):
        return math.nan, "comparable" if not ratio else "–"
    value = base / ferret if ratio else ferret - base
    return value, ("comparable " if not ratio else "") + f"({show(value)}, from its numbers)"


# "Comparable" scores: the paired interval of Ferret - baseline must lie within +-5 Rouge-L points,
# 2-10x the paper's own seed std (0.4-2.8 pts in Table 2). An interval that merely includes 0 but
# is wider shows no difference and no equivalence either: "not resolved".
COMPARABLE_PTS = 5.0


def _qualifier(iv: stats.Interval) -> str:
    """What a verdict rests on, beside it: every seed (n < MIN_SEEDS), an exact value, or nothing
    (a confidence interval)."""
    if iv.kind == "exact":
        return " (exact: the same in every seed)"
    if iv.kind == "range":
        return f" (every seed, n = {iv.n}; no interval)"
    return ""


def direction(ratio: bool, paper: float, iv: stats.Interval) -> str:
    """Whether our interval points the paper's way: for a ratio, the side of 1 the paper's value
    is on (Ferret cheaper unless the paper says otherwise); for the score ('comparable'), Ferret
    higher, or the interval within +-COMPARABLE_PTS. An exact value decides alone, and with fewer
    than MIN_SEEDS seeds every seed must agree; 'not resolved' is left for the cases where the
    interval (or the seeds) lie on both sides."""
    if iv.n == 0 or math.isnan(iv.mean):
        return "–"
    low, high = (iv.mean, iv.mean) if iv.kind == "exact" else (iv.low, iv.high)
    why = _qualifier(iv)
    if ratio:
        side = 1.0 if math.isnan(paper) or paper >= 1 else -1.0  # +1: the baseline costs more
        if iv.n < 2:
            return ("yes" if side * (iv.mean - 1) > 0 else "no") + " (one seed, no interval)"
        if side * (low - 1) > 0 and side * (high - 1) > 0:
            return "yes" + why
        if side * (low - 1) < 0 and side * (high - 1) < 0:
            return "no: the opposite direction" + why
        if low == high == 1:
            return "no: equal" + why
        if iv.kind == "range":
            return f"not resolved: the seeds disagree (n = {iv.n})"
        return "not resolved: the interval includes 1×"
    if iv.n < 2:
        return "no interval (one seed)"
    if low > 0:
        return "yes (Ferret higher)" + why
    if high < 0:
        return "no: Ferret lower" + why
    if low >= -COMPARABLE_PTS and high <= COMPARABLE_PTS:
        return f"yes (within ±{COMPARABLE_PTS:g} pts)" + why
    if iv.kind == "range":
        return f"not resolved: the seeds disagree by more than ±{COMPARABLE_PTS:g} pts (n = {iv.n})"
    return f"not resolved: no significant difference, but the interval is wider than ±{COMPARABLE_PTS:g} pts"


def claims_table(df: pd.DataFrame, reference: Path | None = None, method: str = "ferret") -> pd.DataFrame:
    """The paper's headline claims beside the same quantities from our runs (module docstring)."""
    claims, _ = read_reference(reference)
    rows = []
    for _, claim in claims.iterrows():
        quantity, ratio = MEASURES[claim["claim"]]
        show = _times if ratio else _points
        value, paper_cell = paper_value(claim)
        for dataset, model in sorted(set(zip(df["dataset"], df["model"]))):
            here = df[(df["dataset"] == dataset) & (df["model"] == model)]
            base_runs, our_runs = main_config_runs(here, claim["baseline"]), main_config_runs(here, method)
            base, ours = per_seed(base_runs, quantity), per_seed(our_runs, quantity)
            iv = paired(base, ours, ratio, DIFFERENCE_DOMAIN)
            holds = direction(ratio, value, iv)
            if claim["claim"] == "rounds" and not base.empty and set(base) == set(ours):
                holds = "not tested (both ran the same rounds; see rounds to target)"
            rows.append({"claim": f"{claim['claim']} vs {claim['baseline']}", "setting": f"{dataset} / {model}",
                         "paper": paper_cell, "paper baseline": claim.get("paper_baseline_abs", "–"),
                         "paper Ferret": claim.get("paper_ferret_abs", "–"),
                         "ours baseline": _abs(stats.summary(base.tolist(), DOMAINS[claim["claim"]])),
                         "ours Ferret": _abs(stats.summary(ours.tolist(), DOMAINS[claim["claim"]])),
                         "measured (paired by seed)": _with_interval(iv, show), "direction holds": holds,
                         "measured as": claim.get("definition", "")})
            if claim["claim"] == "rounds":  # equal rounds run: also rounds to a common eval loss
                rows.append(_rounds_to_target_row(here, claim["baseline"], method, f"{dataset} / {model}"))
    columns = ["claim", "setting", "paper", "paper baseline", "paper Ferret", "ours baseline", "ours Ferret",
               "measured (paired by seed)", "direction holds", "measured as"]
    return pd.DataFrame(rows, columns=columns).set_index("claim")


def common_target(runs_by_method: dict[str, pd.DataFrame]) -> float:
    """Half-way from the untuned loss (mean round-0 eval loss) to the best method's mean final loss."""
    rows = [r for r in runs_by_method.values() if not r.empty]
    if not rows:
        return math.nan
    every = pd.concat(rows)
    untuned = float(every[every["round"] == 0]["eval_loss"].mean())
    best = min(per_seed(r, _final_loss).mean() for r in rows)
    return untuned - 0.5 * (untuned - best)


def _seconds_to_target(run: pd.DataFrame, target: float) -> float:
    r = rounds_to_target(run, target)
    return math.nan if math.isnan(r) else float(run.loc[run["round"] == r, "compute_s"].iloc[0])


def _loss_within(run: pd.DataFrame, budget: float) -> float:
    """Eval loss at the last evaluation whose cumulative compute is within ``budget`` seconds."""
    evaluated = run.dropna(subset=["eval_loss"])
    inside = evaluated[evaluated["compute_s"] <= budget * (1 + 1e-9)]
    return float(inside.sort_values("round")["eval_loss"].iloc[-1])


def _total_s(run: pd.DataFrame) -> float:
    return float(run["compute_s"].max())


def compute_budget(runs: pd.DataFrame) -> float:
    """The common compute budget: the mean over seeds of a method's whole-run compute seconds
    (``runs`` carry runs.with_compute_clock's ``compute_s``)."""
    return float(per_seed(runs, _total_s).mean())


def _to_target(base: pd.DataFrame, ours: pd.Series, target: float, of: Quantity, total: Quantity) -> str:
    """A baseline's rounds or seconds to the target ÷ Ferret's, paired by seed; where a seed of
    the baseline never reached it, a lower bound from what that seed spent."""
    reached = per_seed(base, of)
    if reached.isna().any():
        spent = per_seed(base, total)
        bound = (spent[reached.isna()] / ours.reindex(spent[reached.isna()].index)).min()
        return f"> {_times(bound)} ({int(reached.isna().sum())} of {len(reached)} seeds not reached)"
    return _with_interval(paired(reached, ours, True), _times)


def _rounds_to_target_row(here: pd.DataFrame, baseline: str, method: str, setting: str) -> dict:
    """Rounds each method needs to reach the common target (common_target of the two)."""
    runs = {m: main_config_runs(here, m) for m in (baseline, method)}
    target = common_target(runs)

    def rounds_of(run: pd.DataFrame) -> float:
        return rounds_to_target(run, target)

    base, ours = per_seed(runs[baseline], rounds_of), per_seed(runs[method], rounds_of)
    measured, holds = "–", "–"
    if not base.empty and not ours.empty and not ours.isna().any():
        measured = _to_target(runs[baseline], ours, target, rounds_of, _rounds_run)
        iv = paired(base, ours, True)
        holds = "yes (lower bound)" if base.isna().any() else direction(True, math.nan, iv)
    elif not ours.empty and ours.isna().any():
        holds = "no: Ferret did not reach the target in every seed"
    return {"claim": f"rounds to target vs {baseline}", "setting": setting, "paper": "–", "paper baseline": "–",
            "paper Ferret": "–", "ours baseline": _abs(stats.summary(base.dropna().tolist(), stats.POSITIVE)),
            "ours Ferret": _abs(stats.summary(ours.dropna().tolist(), stats.POSITIVE)),
            "measured (paired by seed)": measured,
            "direction holds": holds,
            "measured as": f"baseline / Ferret rounds to eval loss ≤ {target:.3f} (half-way from the untuned "
                           "loss to the better method's final loss)"}


def budget_table(df: pd.DataFrame, method: str = "ferret") -> tuple[pd.DataFrame, str]:
    """Per data set / model and method: cost to the common target and eval loss within Ferret's
    compute budget (module docstring), and a caption line naming the target and budget."""
    clocked = with_compute_clock(df)
    rows, notes = [], []
    for (dataset, model), here in clocked.groupby(["dataset", "model"], sort=True):
        runs = {m: main_config_runs(here, m) for m in sorted(set(here["method"]))}
        if method not in runs:
            continue
        target = common_target(runs)
        budget = compute_budget(runs[method])
        setting = f"{dataset} / {model}"
        notes.append(f"{setting}: target eval loss {target:.3f}, budget {budget:.0f} s")

        # target and budget are bound as defaults: each quantity is used within this iteration
        def seconds_of(run: pd.DataFrame, target: float = target) -> float:
            return _seconds_to_target(run, target)

        seconds_to = {m: per_seed(r, seconds_of) for m, r in runs.items()}
        within = {m: per_seed(r, lambda run, budget=budget: _loss_within(run, budget)) for m, r in runs.items()}
        ours_s, ours_loss = seconds_to[method], within[method]
        for m, r in runs.items():
            rounds = per_seed(r, lambda run, target=target: rounds_to_target(run, target))
            seconds, loss = seconds_to[m], within[m]
            total = per_seed(r, _total_s)
            missed = int(seconds.isna().sum())
            to_target = "ref" if m == method else (
                _to_target(r, ours_s, target, seconds_of, _total_s)
                if not ours_s.isna().any() else "–")
            rows.append({
                "setting": setting, "method": m, "seeds": len(total),
                "reached target": f"{len(seconds) - missed} of {len(seconds)}",
                "rounds to target": _abs(stats.summary(rounds.dropna().tolist(), stats.POSITIVE)),
                "compute s to target": _abs(stats.summary(seconds.dropna().tolist(), stats.POSITIVE)),
                "compute to target ÷ Ferret": to_target,
                "eval loss within budget": _abs(stats.summary(loss.tolist(), stats.POSITIVE)),
                "Δ loss vs Ferret (paired by seed)": "ref" if m == method else _with_interval(
                    paired(ours_loss, loss, False), lambda v: f"{v:+.3f}"),
                "run ended before the budget": "yes" if (total < budget).all() else "no",
                "total compute s": _abs(stats.summary(total.tolist(), stats.POSITIVE)),
                "final eval loss": _abs(stats.summary(per_seed(r, _final_loss).tolist(), stats.POSITIVE)),
            })
    return pd.DataFrame(rows), "; ".join(notes)
