"""Cost per round in the paper's shape (Tables 4, 5, 10 of App. C.2), ours beside the paper's.

Per (dataset, model, method), over rounds >= 1 of the method's main configuration:
local = (local update + projection/encode) seconds per client, aggregation = server seconds per
round, overall = local + aggregation (the paper's definition). Communication per client per round,
both directions: our measured bytes, and the same divided by 2 — the paper counts parameters at
16 bits, so bytes / 2 is the figure in its unit. Ferret's ratios (FedKSeed / Ferret for time,
FedAvg / Ferret for communication) are computed the same way from both sides' absolute numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ferret.report.tables import REFERENCE, main_config_runs

KEY = ["dataset", "model", "method"]
BYTES_PER_PARAM = 2  # the paper's 16-bit parameters
# column -> (paper column in cost_per_round.csv, baseline of Ferret's ratio)
QUANTITIES = {"local s": ("local_s", "fedkseed"), "aggregation s": ("aggregation_s", "fedkseed"),
              "overall s": ("overall_s", "fedkseed"), "comm params": ("comm_params", "fedavg")}


def read_cost_reference(folder: Path | None = None) -> pd.DataFrame:
    """The paper's cost rows (cost_per_round.csv), or an empty frame when the file is absent."""
    path = (REFERENCE if folder is None else Path(folder)) / "cost_per_round.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=KEY + [p for p, _ in QUANTITIES.values()])


def measured_cost(runs: pd.DataFrame) -> dict[str, float]:
    """Our per-round cost of one method's runs in the paper's quantities, plus measured bytes."""
    trained = runs[runs["round"] >= 1]
    local = float(((trained["t_local_s"] + trained["t_encode_s"].fillna(0)) / trained["clients"]).mean())
    aggregation = float(trained["t_aggregate_s"].mean())
    nbytes = float((trained["uplink_bytes_per_client"] + trained["downlink_bytes_per_client"]).mean())
    return {"local s": local, "aggregation s": aggregation, "overall s": local + aggregation,
            "comm params": nbytes / BYTES_PER_PARAM, "comm bytes": nbytes}


def paper_cost_table(df: pd.DataFrame, reference: Path | None = None, method: str = "ferret") -> pd.DataFrame:
    """Ours and the paper's cost per (dataset, model, method), with Ferret's ratio rows ("ferret ratio")."""
    paper = read_cost_reference(reference).set_index(KEY)
    settings = sorted(set(zip(df["dataset"], df["model"])) | {k[:2] for k in paper.index})
    rows = []
    for dataset, model in settings:
        here = df[(df["dataset"] == dataset) & (df["model"] == model)]
        methods = sorted(set(here["method"]) | {k[2] for k in paper.index if k[:2] == (dataset, model)})
        cells = {}
        for m in methods:
            runs = main_config_runs(here, m)
            ours = measured_cost(runs) if not runs.empty else {}
            theirs = paper.loc[(dataset, model, m)] if (dataset, model, m) in paper.index else None
            cells[m] = (ours, theirs)
            row = {"dataset": dataset, "model": model, "method": m}
            for q, (col, _) in QUANTITIES.items():
                row[f"ours {q}"] = ours.get(q, math.nan)
                row[f"paper {q}"] = float(theirs[col]) if theirs is not None else math.nan
            row["ours comm bytes"] = ours.get("comm bytes", math.nan)
            rows.append(row)
        ratio = {"dataset": dataset, "model": model, "method": f"{method} ratio"}
        for q, (col, base) in QUANTITIES.items():
            ratio[f"ours {q}"] = _ratio(cells.get(base, ({}, None))[0].get(q), cells.get(method, ({}, None))[0].get(q))
            b, f = cells.get(base, ({}, None))[1], cells.get(method, ({}, None))[1]
            ratio[f"paper {q}"] = _ratio(None if b is None else float(b[col]), None if f is None else float(f[col]))
        ratio["ours comm bytes"] = math.nan
        rows.append(ratio)
    return pd.DataFrame(rows).set_index(KEY)


def _ratio(base: float | None, ours: float | None) -> float:
    if base is None or ours is None or math.isnan(base) or math.isnan(ours) or ours == 0:
        return math.nan
    return base / ours
