"""Our numbers beside the paper's, cell by cell (results/reference/, arXiv 2409.06277v3).

* Rouge-L comparison: for every (data set, model, method) we ran, and every cell the paper has
  in a setting we ran, our final Rouge-L (%) by the paper's own metric (``PAPER_METRIC``: the
  official code's `rouge` 1.0.1, ferret/metrics.py; rouge-score's ``rouge_l`` is another quantity)
  mean ± std over seeds beside the paper's (Tables 2,
  3, 9), the difference, and a verdict in units of the combined standard error
  ``se = sqrt(s_ours²/n_ours + s_paper²/n_paper)``: "within 1σ", "within 2σ" or "off" (an
  unknown std, one seed, contributes no term). "no paper value" / "not run" where one side is
  missing. Absolute scores do not transfer across models, so a setting the paper did not run
  gets no paper column.
* Cost in the paper's shape (Tables 4, 5, 10): per method, local, aggregation and overall
  seconds per round per client; communication per round per client in the paper's unit
  (parameters, both directions, 16-bit: measured bytes / 2) and in measured bytes; and each
  method's overall time and parameters as a multiple of Ferret's, beside the paper's multiples.
  Where the paper has no row for our (data set, model), the multiples are set beside those of
  its Table 4 setting (NI / LLaMA-3B) and the column says so: ratios, unlike seconds, are
  meant to carry across scale (that is the claim under test).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ferret.report.runs import REFERENCE, final_rows, finished, main_config_runs, read_reference, round_costs

FALLBACK = ("natural-instructions", "llama-3b")  # Table 4: the paper's headline cost setting
# The column of all_runs.csv that is the paper's metric: what its cells are compared with.
PAPER_METRIC = "rouge_l_official"


def verdict(diff: float, se: float) -> str:
    """'within 1σ' / 'within 2σ' / 'off' for a difference in units of its standard error."""
    if math.isnan(diff) or math.isnan(se) or se == 0:
        return "no σ" if not math.isnan(diff) else "–"
    z = abs(diff) / se
    return "within 1σ" if z <= 1 else "within 2σ" if z <= 2 else "off"


def _std_term(std: float, n: float) -> float:
    return 0.0 if math.isnan(std) or n < 2 else std * std / n


def rouge_comparison(df: pd.DataFrame, reference: Path | None = None) -> pd.DataFrame:
    """One row per cell: ours and the paper's Rouge-L (%), difference, se and verdict."""
    _, paper = read_reference(reference)
    rows = []
    for (dataset, model), here in df.groupby(["dataset", "model"], sort=True):
        cells = paper[(paper["dataset"] == dataset) & (paper["model"] == model)]
        methods = sorted(set(here["method"]) | set(cells["method"]))
        for method in methods:
            runs = main_config_runs(here, method)
            ended = finished(final_rows(runs)) if not runs.empty else pd.DataFrame()
            # Runs made before the official metric existed have no such column: no score, not rouge-score's.
            scores = 100.0 * ended[PAPER_METRIC].dropna() if PAPER_METRIC in ended else pd.Series(dtype=float)
            hit = cells[cells["method"] == method]
            p_mean = float(hit["rouge_l_mean"].iloc[0]) if not hit.empty else math.nan
            p_std = float(hit["rouge_l_std"].iloc[0]) if not hit.empty else math.nan
            p_n = float(hit["n_seeds"].iloc[0]) if not hit.empty and "n_seeds" in hit else math.nan
            n = len(scores)
            mean = float(scores.mean()) if n else math.nan
            std = float(scores.std(ddof=1)) if n > 1 else math.nan
            diff = mean - p_mean
            terms = _std_term(std, n) + _std_term(p_std, p_n)
            se = math.sqrt(terms) if terms > 0 else math.nan
            if not n:
                status = "not run" if runs.empty else f"no {PAPER_METRIC} (runs made before it)"
            elif math.isnan(p_mean):
                status = "no paper value"
            else:
                status = verdict(diff, se)
            rows.append({"dataset": dataset, "model": model, "method": method,
                         "ours": mean, "ours std": std, "ours n": n,
                         "paper": p_mean, "paper std": p_std, "paper n": p_n,
                         "ours − paper": diff, "se": se, "verdict": status})
    columns = ["dataset", "model", "method", "ours", "ours std", "ours n", "paper", "paper std", "paper n",
               "ours − paper", "se", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def _per_client_round(runs: pd.DataFrame) -> dict[str, float]:
    """Means over every trained round of the runs (runs.round_costs's definitions)."""
    costs = round_costs(runs)
    return {} if costs.empty else {k: float(costs[k].mean()) for k in
                                   ("local_s", "aggregation_s", "overall_s", "bytes", "params16")}


def cost_comparison(df: pd.DataFrame, reference: Path | None = None, ferret: str = "ferret") -> pd.DataFrame:
    """Per (setting, method): our cost per round per client beside the paper's, and both sides'
    multiples of Ferret (overall seconds, parameters)."""
    folder = REFERENCE if reference is None else Path(reference)
    path = folder / "cost_per_round.csv"
    paper = pd.read_csv(path) if path.is_file() else pd.DataFrame(
        columns=["table", "dataset", "model", "method", "local_s", "aggregation_s", "overall_s", "comm_params"])
    rows = []
    for (dataset, model), here in df.groupby(["dataset", "model"], sort=True):
        cells = paper[(paper["dataset"] == dataset) & (paper["model"] == model)]
        setting = f"{dataset} / {model}"
        if cells.empty:
            cells = paper[(paper["dataset"] == FALLBACK[0]) & (paper["model"] == FALLBACK[1])]
            setting += f" (paper: {FALLBACK[0]} / {FALLBACK[1]})"
        ours = {m: _per_client_round(main_config_runs(here, m)) for m in sorted(set(here["method"]))}
        base = ours.get(ferret, {})
        p_base = cells[cells["method"] == ferret]
        for method, cost in ours.items():
            if not cost:
                continue
            hit = cells[cells["method"] == method]
            p = hit.iloc[0] if not hit.empty else None
            rows.append({
                "setting": setting, "method": method,
                "local s": cost["local_s"], "aggregation s": cost["aggregation_s"], "overall s": cost["overall_s"],
                "params/round (16-bit)": cost["params16"], "bytes/round": cost["bytes"],
                "overall ÷ Ferret": cost["overall_s"] / base["overall_s"] if base else math.nan,
                "params ÷ Ferret": cost["params16"] / base["params16"] if base else math.nan,
                "paper table": p["table"] if p is not None else "",
                "paper local s": float(p["local_s"]) if p is not None else math.nan,
                "paper aggregation s": float(p["aggregation_s"]) if p is not None else math.nan,
                "paper overall s": float(p["overall_s"]) if p is not None else math.nan,
                "paper params/round": float(p["comm_params"]) if p is not None else math.nan,
                "paper overall ÷ Ferret": (float(p["overall_s"]) / float(p_base["overall_s"].iloc[0])
                                           if p is not None and not p_base.empty else math.nan),
                "paper params ÷ Ferret": (float(p["comm_params"]) / float(p_base["comm_params"].iloc[0])
                                          if p is not None and not p_base.empty else math.nan),
            })
    return pd.DataFrame(rows)
