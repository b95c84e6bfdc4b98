"""The paper's headline claims (Figure 1, App. C.2; ``results/reference/claims.csv``) recomputed
from our runs with the paper's definitions, showing both sides' absolute numbers, not ratios alone.

Definitions (per data set / model, each method's main configuration, rounds >= 1):
computation = overall seconds per round per client (local + projection, plus aggregation);
local / aggregation = those two parts; communication = 16-bit parameters per client per round,
up + down (bytes / 2); rounds = rounds each method needs to reach a target eval loss, the higher
of the two methods' mean final losses, so both reach it (the paper compares rounds *run*, 40 vs 12,
which says nothing about progress; the table prints its numbers beside ours);
score = final Rouge-L (%), Ferret minus baseline."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ferret.report.cost import measured_cost
from ferret.report.tables import final_rows, main_config_runs, read_reference, rounds_to_target

Measure = Callable[[pd.DataFrame, pd.DataFrame], tuple[float, float]]


def _cost(quantity: str) -> Measure:
    return lambda base, ours: (measured_cost(base)[quantity], measured_cost(ours)[quantity])


def _rounds(base: pd.DataFrame, ours: pd.DataFrame) -> tuple[float, float]:
    target = max(final_rows(base)["eval_loss"].mean(), final_rows(ours)["eval_loss"].mean())
    # mean over seeds; nan unless every seed reached the target
    b, o = (float(pd.Series([rounds_to_target(r, target) for _, r in runs.groupby("run_id")]).mean(skipna=False))
            for runs in (base, ours))
    return b, o


def _score(base: pd.DataFrame, ours: pd.DataFrame) -> tuple[float, float]:
    return 100.0 * final_rows(base)["rouge_l"].mean(), 100.0 * final_rows(ours)["rouge_l"].mean()


# claim key in claims.csv -> (our measure, True when the claim is a ratio baseline / Ferret, else a gap)
MEASURES: dict[str, tuple[Measure, bool]] = {
    "computation": (_cost("overall s"), True),
    "local": (_cost("local s"), True),
    "aggregation": (_cost("aggregation s"), True),
    "communication": (_cost("comm params"), True),
    "rounds": (_rounds, True),
    "score": (_score, False),
}
COLUMNS = ["vs", "setting", "paper baseline", "paper ferret", "paper", "ours baseline", "ours ferret", "ours"]


def compare(base: float, ours: float, ratio: bool) -> float:
    """baseline / Ferret for a ratio claim, Ferret - baseline for a gap; nan where undefined."""
    if math.isnan(base) or math.isnan(ours):
        return math.nan
    if ratio:
        return base / ours if ours else math.nan
    return ours - base


def claims_table(df: pd.DataFrame, reference: Path | None = None, method: str = "ferret") -> pd.DataFrame:
    """One row per claim and data set / model we ran: both sides' absolute numbers and their ratio (or gap)."""
    claims, _ = read_reference(reference)
    rows = []
    for _, claim in claims.iterrows():
        if claim["claim"] not in MEASURES:
            raise ValueError(f"claims.csv: claim {claim['claim']!r} has no measure; known: {sorted(MEASURES)}")
        measure, ratio = MEASURES[claim["claim"]]
        pb, pf = (float(str(claim[c]).replace("10^", "1e")) for c in ("paper_baseline_abs", "paper_ferret_abs"))
        for dataset, model in sorted(set(zip(df["dataset"], df["model"]))):
            here = df[(df["dataset"] == dataset) & (df["model"] == model)]
            base, ours = main_config_runs(here, claim["baseline"]), main_config_runs(here, method)
            ob, of = measure(base, ours) if not base.empty and not ours.empty else (math.nan, math.nan)
            rows.append({"claim": claim["claim"], "vs": claim["baseline"], "setting": f"{dataset} / {model}",
                         "paper baseline": pb, "paper ferret": pf, "paper": compare(pb, pf, ratio),
                         "ours baseline": ob, "ours ferret": of, "ours": compare(ob, of, ratio)})
    return pd.DataFrame(rows, columns=["claim", *COLUMNS]).set_index("claim")


def format_claims(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers to 4 significant digits, so the paper's printed values (180.7, 6e+09) read unchanged."""
    return table.map(lambda v: ("–" if math.isnan(v) else f"{v:.4g}") if isinstance(v, float) else str(v))
