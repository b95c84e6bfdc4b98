"""Selecting runs and rows from all_runs.csv, and the per-round cost quantities every report shares.

A configuration is (method, K, num_clients, dtype, precision); a method's *main configuration* is
the one with the most runs (the ablations add runs of other K, N or precision), so tables comparing methods do not mix
ablation runs in. Costs follow the paper's definitions (App. C.2), per client and per round:

* local = (local training + encode) / clients: the projection counts as local update;
* aggregation = decode + receive + aggregate (the engine's ``t_aggregate_s``);
* overall = local + aggregation: a round's compute with the sampled clients in parallel;
* parameters = (uplink + downlink bytes per client) / 2: the paper counts 16-bit parameters,
  both directions; ours are the bytes of the messages actually serialised.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

CONFIG = ["method", "K", "num_clients"]
# What a label names where one method was run with several values of it (the precision ablation:
# dtype and precision; all_runs.csv made before they existed lacks them).
VARIANTS = ("K", "num_clients", "dtype", "precision")
REFERENCE = Path("results/reference")  # relative to the repository root, where the rules run


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add a `label` column naming each configuration; K, N, dtype and precision appear only where
    that method was run with more than one value of them."""
    def label(row: pd.Series, varying: dict[str, set[str]]) -> str:
        extra = [f"{k}={row[k]}" for k in VARIANTS if k in varying.get(row["method"], set())]
        return row["method"] + (f" ({', '.join(extra)})" if extra else "")

    varying: dict[str, set[str]] = {}
    for method, group in df.groupby("method"):
        varying[method] = {k for k in VARIANTS if k in group and group[k].nunique(dropna=False) > 1}
    out = df.copy()
    out["label"] = out.apply(label, axis=1, varying=varying)
    return out


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last round of every run."""
    return df.sort_values("round").groupby("run_id", as_index=False).tail(1)


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs whose last row is a final result (not diverged, not failed)."""
    return runs[~runs["status"].isin(["diverged", "failed"])] if "status" in runs else runs


def main_config_runs(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """Rows of ``method``'s main configuration: the (K, num_clients, dtype, precision) with the most
    runs (ties: the first)."""
    rows = df[df["method"] == method]
    if rows.empty:
        return rows
    keys = [k for k in VARIANTS if k in rows]
    counts = rows.groupby(keys, dropna=False)["run_id"].nunique()
    best = counts[counts == counts.max()].index[0]
    best = best if isinstance(best, tuple) else (best,)
    keep = pd.Series(True, index=rows.index)
    for k, v in zip(keys, best):
        keep &= rows[k].isna() if pd.isna(v) else rows[k] == v
    return rows[keep]


def read_reference(folder: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(claims, the paper's Rouge-L cells of Tables 2, 3 and 9) from the reference folder; empty
    frames when it is absent."""
    folder = REFERENCE if folder is None else Path(folder)
    claims = folder / "claims.csv"
    tables = [pd.read_csv(f) for f in (folder / f"table{n}_rouge_l.csv" for n in (2, 3, 9)) if f.is_file()]
    rouge = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["dataset", "model", "method", "rouge_l_mean", "rouge_l_std"])
    return (pd.read_csv(claims, dtype={"paper_value": str}) if claims.is_file()
            else pd.DataFrame(columns=["claim", "baseline", "paper_value"]), rouge)


def round_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Per trained round (round >= 1): local_s, aggregation_s, overall_s, bytes and params16 per
    client, by the definitions in the module docstring."""
    t = rows[rows["round"] >= 1]
    local = (t["t_local_s"].fillna(0) + t["t_encode_s"].fillna(0)) / t["clients"]
    aggregation = t["t_aggregate_s"].fillna(0)
    both = t["uplink_bytes_per_client"].fillna(0) + t["downlink_bytes_per_client"].fillna(0)
    return pd.DataFrame({"round": t["round"], "local_s": local, "aggregation_s": aggregation,
                         "overall_s": local + aggregation, "bytes": both, "params16": both / 2.0})


def with_compute_clock(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``compute_s``: each run's cumulative overall seconds per client up to and including the
    row's round (0 at round 0), the x axis of "cost to target" and "quality under budget"."""
    df = df.sort_values(["run_id", "round"]).copy()
    overall = round_costs(df)["overall_s"].reindex(df.index).fillna(0.0)
    df["compute_s"] = overall.groupby(df["run_id"]).cumsum()
    return df


def rounds_to_target(run: pd.DataFrame, target: float) -> float:
    """The first evaluated round whose eval loss is at most ``target`` (nan if none)."""
    evaluated = run.dropna(subset=["eval_loss"]).sort_values("round")
    hit = evaluated[evaluated["eval_loss"] <= target]
    return float(hit["round"].iloc[0]) if not hit.empty else math.nan
