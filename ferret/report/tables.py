"""The paper-shaped tables, built from all_runs.csv alone.

* Main table (Table 1 shape): one row per method configuration, one column per data set /
  model, cells = final Rouge-L (%) as mean ± std over seeds (n = number of seeds).
* Cost table: per configuration, per-round local compute and encode seconds per client,
  aggregation seconds per round, bytes up and down per client per round, total bytes of the
  run, and the rounds needed to reach a target eval loss (default: the highest final eval loss
  of all configurations, which every one of them reaches, so the column compares speed).

A configuration is (method, K, num_clients); its label shows K and N only where that method
was run with more than one value of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ferret.tracking import atomic_write_text

CONFIG = ["method", "K", "num_clients"]


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add a `label` column naming each configuration."""
    def label(row: pd.Series, varying: dict[str, set[str]]) -> str:
        extra = [f"{k}={row[k]}" for k in ("K", "num_clients") if k in varying.get(row["method"], set())]
        return row["method"] + (f" ({', '.join(extra)})" if extra else "")

    varying: dict[str, set[str]] = {}
    for method, group in df.groupby("method"):
        varying[method] = {k for k in ("K", "num_clients") if group[k].nunique() > 1}
    out = df.copy()
    out["label"] = out.apply(label, axis=1, varying=varying)
    return out


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last round of every run."""
    return df.sort_values("round").groupby("run_id", as_index=False).tail(1)


def _mean_std(values: pd.Series, scale: float = 1.0, digits: int = 1) -> str:
    values = values.dropna() * scale
    if values.empty:
        return "–"
    std = values.std(ddof=1) if len(values) > 1 else float("nan")
    text = f"{values.mean():.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if not math.isnan(std) else "") + f" (n={len(values)})"


def main_table(df: pd.DataFrame) -> pd.DataFrame:
    """Final Rouge-L (%) mean ± std over seeds: configurations × (data set / model)."""
    final = with_labels(final_rows(df))
    final["setting"] = final["dataset"] + " / " + final["model"]
    table = final.groupby(["label", "setting"])["rouge_l"].apply(_mean_std, scale=100.0).unstack("setting")
    table.index.name, table.columns.name = "method", None
    return table.fillna("–")


def rounds_to_target(run: pd.DataFrame, target: float) -> float:
    evaluated = run.dropna(subset=["eval_loss"]).sort_values("round")
    hit = evaluated[evaluated["eval_loss"] <= target]
    return float(hit["round"].iloc[0]) if not hit.empty else math.nan


def cost_table(df: pd.DataFrame, target_loss: float | None = None) -> tuple[pd.DataFrame, float]:
    """Per-configuration cost (means over rounds >= 1 and seeds) and the target eval loss used."""
    labelled = with_labels(df)
    final = final_rows(labelled)
    if target_loss is None:
        target_loss = float(final.groupby("label")["eval_loss"].mean().max())
    trained = labelled[labelled["round"] >= 1]
    per_client = trained.assign(
        local_s=trained["t_local_s"] / trained["clients"], encode_s=trained["t_encode_s"] / trained["clients"])
    rows = []
    for label, group in per_client.groupby("label"):
        runs = labelled[labelled["label"] == label]
        rows.append({
            "method": label,
            "local s/client/round": group["local_s"].mean(),
            "encode s/client/round": group["encode_s"].mean(),
            "aggregate s/round": group["t_aggregate_s"].mean(),
            "uplink B/client/round": group["uplink_bytes_per_client"].mean(),
            "downlink B/client/round": group["downlink_bytes_per_client"].mean(),
            "total bytes": final[final["label"] == label]["cum_bytes"].mean(),
            # mean over seeds, and '–' unless every seed reached the target
            f"rounds to eval loss ≤ {target_loss:.3f}": pd.Series(
                [rounds_to_target(r, target_loss) for _, r in runs.groupby("run_id")]).mean(skipna=False),
        })
    return pd.DataFrame(rows).set_index("method"), target_loss


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if abs(value) >= 1e4:
            return f"{value:.3g}"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def write_tables(df: pd.DataFrame, out: Path, target_loss: float | None = None) -> dict[str, Path]:
    """Write main.{md,tex} and cost.{md,tex} under out/ and return their paths."""
    cost, target = cost_table(df, target_loss)
    tables = {"main": main_table(df), "cost": cost.map(_fmt)}
    captions = {"main": "Final Rouge-L (%) on held-out instances, mean ± std over seeds.",
                "cost": f"Cost per round; target eval loss {target:.3f}."}
    written = {}
    for name, table in tables.items():
        md = out / f"{name}.md"
        atomic_write_text(md, f"{captions[name]}\n\n{table.to_markdown(disable_numparse=True)}\n")
        tex = out / f"{name}.tex"
        atomic_write_text(tex, table.to_latex(caption=captions[name], label=f"tab:{name}"))
        written[name] = md
    return written
