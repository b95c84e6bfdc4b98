"""The paper-shaped tables, built from all_runs.csv (and the paper's numbers in results/reference/).

* Main table (Table 1 shape): one row per method configuration; per data set / model three
  columns: final Rouge-L (%) and final eval loss, each mean ± std over seeds (n = number of
  seeds), and the paper's Rouge-L (``table{2,3,9}_rouge_l.csv``; "n/a" where it gives none).
* Cost table: per configuration, per-round local compute and encode seconds per client,
  aggregation seconds per round, bytes up and down per client per round, total bytes of the
  run, and the rounds needed to reach a target eval loss (default: the highest final eval loss
  of all configurations, which every one of them reaches, so the column compares speed).

* Claims table: in ``ferret.report.claims`` (the paper's headline claims with both sides' numbers).

A configuration is (method, K, num_clients); its label shows K and N only where that method
was run with more than one value of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ferret.tracking import atomic_write_text

CONFIG = ["method", "K", "num_clients"]
REFERENCE = Path("results/reference")  # relative to the repository root, where the rules run


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


def _main_cell(runs: pd.DataFrame) -> str:
    """Mean ± std over the runs that finished; diverged runs (status from run.json) are left out
    of the mean, since their last row is not a final result, and counted in the cell."""
    diverged = runs["status"].eq("diverged") if "status" in runs else pd.Series(False, index=runs.index)
    failed = runs["status"].eq("failed") if "status" in runs else pd.Series(False, index=runs.index)
    text = _mean_std(runs.loc[~diverged & ~failed, "rouge_l"], scale=100.0)
    return (text + (f" [{int(diverged.sum())} diverged]" if diverged.any() else "")
            + (f" [{int(failed.sum())} failed]" if failed.any() else ""))


def _loss_cell(runs: pd.DataFrame) -> str:
    """Final eval loss mean ± std over the runs that finished (diverged ones as in _main_cell)."""
    finished = runs[~runs["status"].isin(["diverged", "failed"])] if "status" in runs else runs
    return _mean_std(finished["eval_loss"], digits=3)


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


def _paper_cell(table1: pd.DataFrame, dataset: str, model: str, method: str) -> str:
    hit = table1[(table1["dataset"] == dataset) & (table1["model"] == model) & (table1["method"] == method)]
    if hit.empty or pd.isna(hit["rouge_l_mean"].iloc[0]):
        return "n/a"
    mean, std = float(hit["rouge_l_mean"].iloc[0]), hit["rouge_l_std"].iloc[0]
    return f"{mean:.1f}" + (f" ± {float(std):.1f}" if not pd.isna(std) else "")


def main_table(df: pd.DataFrame, reference: Path | None = None) -> pd.DataFrame:
    """Per data set / model: final Rouge-L (%) and eval loss, mean ± std over seeds (a cell with
    diverged runs says how many; they are not in its mean), and the paper's Rouge-L where the
    paper ran that data set and model."""
    final = with_labels(final_rows(df))
    final["setting"] = final["dataset"] + " / " + final["model"]
    _, table1 = read_reference(reference)
    columns = {}
    for setting, group in final.groupby("setting", sort=True):
        by_label = group.groupby("label")[list(group.columns)]
        columns[f"{setting}: Rouge-L (%)"] = by_label.apply(_main_cell)
        columns[f"{setting}: eval loss"] = by_label.apply(_loss_cell)
        first = group.groupby("label").first()
        dataset, model = first["dataset"].iloc[0], first["model"].iloc[0]
        if not ((table1["dataset"] == dataset) & (table1["model"] == model)).any():
            continue  # a setting the paper did not run (e.g. the embedded default): no column of n/a
        columns[f"{setting}: paper Rouge-L (%)"] = pd.Series(
            {label: _paper_cell(table1, row["dataset"], row["model"], row["method"]) for label, row in first.iterrows()})
    table = pd.DataFrame(columns)
    table.index.name = "method"
    return table.fillna("–")


def main_config_runs(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """Rows of ``method``'s main configuration: the (K, num_clients) with the most runs (ties: the first)."""
    rows = df[df["method"] == method]
    if rows.empty:
        return rows
    counts = rows.groupby(["K", "num_clients"])["run_id"].nunique()
    k, n = counts[counts == counts.max()].index[0]
    return rows[(rows["K"] == k) & (rows["num_clients"] == n)]


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


def write_tables(df: pd.DataFrame, out: Path, target_loss: float | None = None,
                 reference: Path | None = None) -> dict[str, Path]:
    """Write main, cost and claims tables (.md and .tex) under out/ and return the .md paths."""
    cost, target = cost_table(df, target_loss)
    from ferret.report.claims import claims_table, format_claims  # these import this module's helpers
    from ferret.report.cost import paper_cost_table
    from ferret.report.paper import paper_comparison

    tables = {"main": main_table(df, reference), "cost": cost.map(_fmt), "claims": format_claims(claims_table(df, reference)),
              "paper_comparison": paper_comparison(df, reference).map(_fmt),
              "paper_cost": paper_cost_table(df, reference).map(_fmt)}
    captions = {"main": "Final Rouge-L (%) and eval loss on held-out instances, mean ± std over seeds "
                        "([k diverged], [k failed]: runs that diverged or failed, not in the mean), beside the paper's Rouge-L.",
                "cost": f"Cost per round; target eval loss {target:.3f}.",
                "claims": "The paper's headline claims (Fig. 1, App. C.2) with both sides' absolute numbers; "
                          "'paper'/'ours': baseline / Ferret for ratios, Ferret - baseline for the score.",
                "paper_comparison": "Our Rouge-L (%) beside the paper's, mean ± std over seeds; verdict in units of "
                                    "se = sqrt(s_ours²/n_ours + s_paper²/n_paper).",
                "paper_cost": "Cost per round in the paper's shape (App. C.2): seconds per client per round, "
                              "communication per client per round (up+down) as 16-bit parameters and as our bytes; "
                              "ratio rows: FedKSeed / Ferret for time, FedAvg / Ferret for communication."}
    written = {}
    for name, table in tables.items():
        md = out / f"{name}.md"
        atomic_write_text(md, f"{captions[name]}\n\n{table.to_markdown(disable_numparse=True)}\n")
        tex = out / f"{name}.tex"
        atomic_write_text(tex, table.to_latex(caption=captions[name], label=f"tab:{name}"))
        written[name] = md
    return written
