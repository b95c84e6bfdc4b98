"""Our Rouge-L beside the paper's, cell by cell, with a verdict in combined standard errors.

A cell is (dataset, model, method). Ours: final rows of that method's main configuration
(``main_config_runs``), diverged and failed runs left out as in the main table, Rouge-L in %.
The paper's: mean ± std over ``n_seeds`` from ``results/reference/table{2,3,9}_rouge_l.csv``.
The difference is judged against se = sqrt(s_ours²/n_ours + s_paper²/n_paper): both means are
estimates, so the question is whether they differ by more than their sampling noise allows."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ferret.report.stats import t_interval
from ferret.report.tables import final_rows, main_config_runs, read_reference

KEY = ["dataset", "model", "method"]
COLUMNS = ["ours", "n ours", "paper", "n paper", "difference", "se", "|diff| / se", "verdict"]


def verdict(diff: float, se: float) -> str:
    """'within 1σ', 'within 2σ' or 'off' for a difference measured in combined standard errors."""
    if math.isnan(diff) or math.isnan(se):
        return "no spread (n < 2)"
    z = abs(diff) / se if se > 0 else (0.0 if diff == 0 else math.inf)
    return "within 1σ" if z <= 1 else "within 2σ" if z <= 2 else "off"


def _ours(df: pd.DataFrame) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    out = {}
    for dataset, model, method in sorted(set(zip(df["dataset"], df["model"], df["method"]))):
        runs = final_rows(main_config_runs(df[(df["dataset"] == dataset) & (df["model"] == model)], method))
        if "status" in runs:
            runs = runs[~runs["status"].isin(["diverged", "failed"])]
        iv = t_interval(list(runs["rouge_l"].astype(float) * 100.0))
        out[(dataset, model, method)] = (iv.mean, iv.std, iv.n)
    return out


def paper_comparison(df: pd.DataFrame, reference: Path | None = None) -> pd.DataFrame:
    """One row per cell either side has: ours and the paper's mean ± std, difference, se, verdict."""
    _, rouge = read_reference(reference)
    paper = {tuple(r[k] for k in KEY): (float(r["rouge_l_mean"]), float(r["rouge_l_std"]),
                                        int(r["n_seeds"]) if not pd.isna(r.get("n_seeds")) else 0)
             for _, r in rouge.iterrows() if not pd.isna(r["rouge_l_mean"])}  # listed but not retrieved: none
    ours = _ours(df)
    rows = []
    for cell in sorted(set(paper) | set(ours)):
        o, p = ours.get(cell), paper.get(cell)
        row = dict(zip(KEY, cell))
        row.update({"ours": _show(o), "n ours": o[2] if o else 0, "paper": _show(p), "n paper": p[2] if p else 0})
        # se needs a spread on both sides: with n < 2 (or no n) on either, the verdict says so
        if o is None or o[2] == 0:
            row.update({"difference": math.nan, "se": math.nan, "|diff| / se": math.nan, "verdict": "not run"})
        elif p is None:
            row.update({"difference": math.nan, "se": math.nan, "|diff| / se": math.nan, "verdict": "no paper value"})
        else:
            diff = o[0] - p[0]
            se = math.sqrt(o[1] ** 2 / o[2] + p[1] ** 2 / p[2]) if o[2] >= 2 and p[2] >= 2 else math.nan
            row.update({"difference": diff, "se": se,
                        "|diff| / se": abs(diff) / se if se and not math.isnan(se) else math.nan,
                        "verdict": verdict(diff, se)})
        rows.append(row)
    return pd.DataFrame(rows, columns=KEY + COLUMNS).set_index(KEY)


def _show(cell: tuple[float, float, int] | None) -> str:
    if cell is None or cell[2] == 0:
        return "–"
    mean, std, _ = cell
    return f"{mean:.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}")
