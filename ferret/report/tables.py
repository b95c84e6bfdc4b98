"""The paper-shaped tables, built from all_runs.csv (and the paper's numbers in results/reference/).

* Main table (Table 1 shape): one row per method configuration; per data set / model: final
  Rouge-L (%) and final eval loss, each mean ± std over seeds (n = number of seeds) with its 95%
  Student-t interval over seeds (ferret/report/stats.py); the paired difference in Rouge-L from
  Ferret's main configuration on the shared eval set (per example: each configuration's seeds
  averaged per example, then a paired t-test over the examples; needs all_examples.csv) with a
  significance mark; and the paper's Rouge-L (``table{2,3,9}_rouge_l.csv``; "n/a" where it gives
  none). :func:`main_note` states the number of seeds and eval examples behind it.
* Cost table: per configuration, per-round local compute and encode seconds per client,
  aggregation seconds per round, bytes up and down per client per round, total bytes of the
  run, and the rounds needed to reach a target eval loss (default: the highest final eval loss
  of all configurations, which every one of them reaches, so the column compares speed).

* Claims table: each headline claim of the paper (``claims.csv``: ≈ 6.0× less computation and
  ≈ 3.3× fewer rounds than FedKSeed, ≈ 10^6× less communication than FedAvg, comparable score)
  beside the same quantity computed from our runs, per data set / model where both methods ran.
  A method's runs there are those of its main configuration (the (K, num_clients) with the most
  runs), so ablation runs do not mix in.

A configuration is (method, K, num_clients); its label shows K and N only where that method
was run with more than one value of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ferret.report import stats
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


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose last row is a final result (not diverged, not failed)."""
    return runs[~runs["status"].isin(["diverged", "failed"])] if "status" in runs else runs


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
    return _mean_std(_finished(runs)["eval_loss"], digits=3)


def _interval_cell(values: pd.Series, scale: float = 1.0, digits: int = 1) -> str:
    """The 95% t interval of the mean over seeds, "[low, high]" ("–" with fewer than 2 seeds)."""
    iv = stats.t_interval((values.dropna() * scale).tolist())
    return "–" if iv.n < 2 else f"[{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def per_example_final(runs: pd.DataFrame, examples: pd.DataFrame, column: str = "rouge_l") -> pd.Series:
    """``column`` per eval example at each finished run's final round, averaged over the runs (seeds)."""
    final = _finished(final_rows(runs))[["run_id", "round"]]
    rows = examples.merge(final, on=["run_id", "round"]).dropna(subset=[column])
    return rows.groupby("example")[column].mean()


def _paired_cells(ours: pd.Series, ref: pd.Series) -> tuple[str, str]:
    """(Δ in points with its 95% t interval, significance mark) of a paired t-test over examples."""
    if ours.empty or ref.empty:
        return "–", ""
    if set(ours.index) != set(ref.index):
        return "n/a (other examples)", ""
    test = stats.paired_t(ours.sort_index().tolist(), ref.sort_index().tolist())
    if test.n < 2 or math.isnan(test.low):
        return f"{100 * test.diff:+.1f}", ""
    return (f"{100 * test.diff:+.1f} [{100 * test.low:+.1f}, {100 * test.high:+.1f}]",
            "*" if test.significant else "")


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


def main_table(df: pd.DataFrame, reference: Path | None = None, examples: pd.DataFrame | None = None,
               method: str = "ferret") -> pd.DataFrame:
    """Per data set / model: final Rouge-L (%) and eval loss, mean ± std over seeds (a cell with
    diverged runs says how many; they are not in its mean) and their 95% t intervals over seeds;
    with ``examples`` (all_examples.csv), the paired difference in Rouge-L from ``method``'s main
    configuration and its significance mark (* : p < 0.05); and the paper's Rouge-L where the
    paper ran that data set and model."""
    labelled = with_labels(df)
    labelled["setting"] = labelled["dataset"] + " / " + labelled["model"]
    final = final_rows(labelled)
    _, table1 = read_reference(reference)
    columns = {}
    for setting, group in final.groupby("setting", sort=True):
        by_label = group.groupby("label")[list(group.columns)]
        columns[f"{setting}: Rouge-L (%)"] = by_label.apply(_main_cell)
        columns[f"{setting}: Rouge-L 95% t"] = by_label.apply(
            lambda runs: _interval_cell(_finished(runs)["rouge_l"], scale=100.0))
        if examples is not None:
            all_rows = labelled[labelled["setting"] == setting]
            ref_runs = main_config_runs(all_rows, method)
            ref_label = ref_runs["label"].iloc[0] if not ref_runs.empty else None
            ref = per_example_final(ref_runs, examples) if ref_label else pd.Series(dtype=float)
            delta, mark = {}, {}
            for label, runs in all_rows.groupby("label"):
                if label == ref_label:
                    delta[label], mark[label] = "ref", ""
                    continue
                delta[label], mark[label] = _paired_cells(per_example_final(runs, examples), ref)
            columns[f"{setting}: Δ Rouge-L vs {ref_label or method} (pts, paired t, 95%)"] = pd.Series(delta)
            columns[f"{setting}: p < 0.05"] = pd.Series(mark)
        columns[f"{setting}: eval loss"] = by_label.apply(_loss_cell)
        columns[f"{setting}: eval loss 95% t"] = by_label.apply(
            lambda runs: _interval_cell(_finished(runs)["eval_loss"], digits=3))
        first = group.groupby("label").first()
        dataset, model = first["dataset"].iloc[0], first["model"].iloc[0]
        if not ((table1["dataset"] == dataset) & (table1["model"] == model)).any():
            continue  # a setting the paper did not run (e.g. the embedded default): no column of n/a
        columns[f"{setting}: paper Rouge-L (%)"] = pd.Series(
            {label: _paper_cell(table1, row["dataset"], row["model"], row["method"]) for label, row in first.iterrows()})
    table = pd.DataFrame(columns)
    table.index.name = "method"
    return table.fillna("–")


def main_note(df: pd.DataFrame, examples: pd.DataFrame | None = None) -> str:
    """How many seeds and eval examples the main table rests on, per data set / model."""
    final = final_rows(df)
    parts = []
    for (dataset, model), group in final.groupby(["dataset", "model"], sort=True):
        seeds = sorted(set(group.groupby(CONFIG)["seed"].nunique()))
        text = f"{dataset} / {model}: {'–'.join(map(str, sorted({seeds[0], seeds[-1]})))} seed(s) per configuration"
        if examples is not None:
            here = examples[(examples["dataset"] == dataset) & (examples["model"] == model)]
            n = here.groupby("run_id")["example"].nunique()
            text += f", {'–'.join(map(str, sorted({n.min(), n.max()})))} eval examples" if not n.empty \
                else ", no per-example scores"
        parts.append(text)
    return "; ".join(parts) + "."


def main_config_runs(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """Rows of ``method``'s main configuration: the (K, num_clients) with the most runs (ties: the first)."""
    rows = df[df["method"] == method]
    if rows.empty:
        return rows
    counts = rows.groupby(["K", "num_clients"])["run_id"].nunique()
    k, n = counts[counts == counts.max()].index[0]
    return rows[(rows["K"] == k) & (rows["num_clients"] == n)]


def _trained(run: pd.DataFrame) -> pd.DataFrame:
    return run[run["round"] >= 1]


def _local_s(run: pd.DataFrame) -> float:
    t = _trained(run)  # local update incl. the client's encoding (Ferret's projection), per client
    return float(((t["t_local_s"].fillna(0) + t["t_encode_s"].fillna(0)) / t["clients"]).mean())


def _aggregation_s(run: pd.DataFrame) -> float:
    return float(_trained(run)["t_aggregate_s"].mean())


def _overall_s(run: pd.DataFrame) -> float:
    return _local_s(run) + _aggregation_s(run)  # App. C.2: overall = local + aggregation


def _rounds_run(run: pd.DataFrame) -> float:
    return float(run["round"].max())  # Fig. 1 / App. C.2 count the rounds RUN, not rounds to a target


def _params_per_round(run: pd.DataFrame) -> float:
    t = _trained(run)  # the paper's unit: 16-bit parameters, up + down, per client; ours measured bytes / 2
    return float((t["uplink_bytes_per_client"].fillna(0) + t["downlink_bytes_per_client"].fillna(0)).mean()) / 2.0


def _final_rouge(run: pd.DataFrame) -> float:
    return 100.0 * float(final_rows(run)["rouge_l"].iloc[0])


def _times(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.1e}×" if abs(value) >= 1000 else f"{value:.1f}×"


def _points(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.1f} pts"


def _abs(iv: stats.Interval) -> str:
    if iv.n == 0:
        return "–"
    fmt = (lambda v: f"{v:.3g}")
    return fmt(iv.mean) + (f" [{fmt(iv.low)}, {fmt(iv.high)}]" if iv.n >= 2 else "") + f" (n={iv.n})"


# claim key (results/reference/claims.csv) -> (the per-run quantity, by the paper's definition;
# True when the claim is a ratio baseline / Ferret, False for a difference Ferret - baseline)
MEASURES: dict[str, tuple[Callable[[pd.DataFrame], float], bool]] = {
    "computation": (_overall_s, True),
    "local": (_local_s, True),
    "aggregation": (_aggregation_s, True),
    "rounds": (_rounds_run, True),
    "communication": (_params_per_round, True),
    "score": (_final_rouge, False),
}


def _per_run(runs: pd.DataFrame, quantity: Callable[[pd.DataFrame], float]) -> stats.Interval:
    finished = runs[~runs["status"].isin(["diverged", "failed"])] if "status" in runs else runs
    return stats.t_interval([quantity(run) for _, run in finished.groupby("run_id")])


def _direction(ratio_claim: bool, base: stats.Interval, ours: stats.Interval, value: float) -> str:
    """Whether our runs point the way the paper's claim does (Ferret cheaper; or 'comparable')."""
    if math.isnan(value):
        return "–"
    if ratio_claim:
        if value > 1 and not (base.n >= 2 and ours.n >= 2 and base.low <= ours.high):
            return "yes"
        return "yes (intervals overlap)" if value > 1 else "no"
    overlap = base.n >= 2 and ours.n >= 2 and base.low <= ours.high and ours.low <= base.high
    return "yes (intervals overlap)" if overlap else ("yes (Ferret higher)" if value > 0 else "no")


def claims_table(df: pd.DataFrame, reference: Path | None = None, method: str = "ferret") -> pd.DataFrame:
    """The paper's headline claims beside the same quantities from our runs, per data set / model:
    both sides' absolute numbers (ours: mean [95% t interval over seeds]) and the ratio or difference."""
    claims, _ = read_reference(reference)
    rows = []
    for _, claim in claims.iterrows():
        quantity, ratio_claim = MEASURES[claim["claim"]]
        show = _times if ratio_claim else _points
        paper = claim.get("paper_value")  # as printed: "6.0", "10^6", or empty ("comparable")
        paper_cell = show(float(paper.replace("10^", "1e"))) if not pd.isna(paper) else "comparable"
        for dataset, model in sorted(set(zip(df["dataset"], df["model"]))):
            here = df[(df["dataset"] == dataset) & (df["model"] == model)]
            base_runs, our_runs = main_config_runs(here, claim["baseline"]), main_config_runs(here, method)
            base, ours = _per_run(base_runs, quantity), _per_run(our_runs, quantity)
            value = math.nan
            if base.n and ours.n:
                value = (base.mean / ours.mean if ours.mean else math.nan) if ratio_claim else ours.mean - base.mean
            holds = _direction(ratio_claim, base, ours, value)
            if claim["claim"] == "rounds" and base.n and ours.n and base.mean == ours.mean:
                holds = "not tested (both ran the same rounds; see rounds to target)"
            rows.append({"claim": claim["claim"], "vs": claim["baseline"], "setting": f"{dataset} / {model}",
                         "paper": paper_cell, "paper baseline": claim.get("paper_baseline_abs", "–"),
                         "paper Ferret": claim.get("paper_ferret_abs", "–"),
                         "ours baseline": _abs(base), "ours Ferret": _abs(ours), "measured": show(value),
                         "direction holds": holds, "measured as": claim.get("definition", "")})
            if claim["claim"] == "rounds":  # our grid runs every method the same rounds: also to a target
                rows.append(_rounds_to_target_row(base_runs, our_runs, claim["baseline"], f"{dataset} / {model}"))
    columns = ["claim", "vs", "setting", "paper", "paper baseline", "paper Ferret", "ours baseline",
               "ours Ferret", "measured", "direction holds", "measured as"]
    return pd.DataFrame(rows, columns=columns).set_index("claim")


def _rounds_to_target_row(base_runs: pd.DataFrame, our_runs: pd.DataFrame, baseline: str, setting: str) -> dict:
    """Rounds each method needs to reach the eval loss both reach (the higher of their mean final
    losses); the paper gives no such number (its methods ran different rounds)."""
    finals = [_per_run(r, lambda run: float(final_rows(run)["eval_loss"].iloc[0])).mean
              for r in (base_runs, our_runs)]
    target = max(finals) if not any(math.isnan(f) for f in finals) else math.nan
    base, ours = (_per_run(r, lambda run: rounds_to_target(run, target)) for r in (base_runs, our_runs))
    value = base.mean / ours.mean if base.n and ours.n and ours.mean else math.nan
    return {"claim": "rounds to target", "vs": baseline, "setting": setting, "paper": "–",
            "paper baseline": "–", "paper Ferret": "–", "ours baseline": _abs(base), "ours Ferret": _abs(ours),
            "measured": _times(value), "direction holds": _direction(True, base, ours, value),
            "measured as": f"baseline / Ferret rounds to eval loss ≤ {target:.3f} (the higher final loss)"}


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
                 reference: Path | None = None, examples: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write main, cost and claims tables (.md and .tex) under out/ and return the .md paths.
    ``examples`` (all_examples.csv) adds the main table's paired differences from Ferret."""
    cost, target = cost_table(df, target_loss)
    from ferret.report import paper  # paper.py builds on this module's helpers

    tables = {"main": main_table(df, reference, examples), "cost": cost.map(_fmt),
              "claims": claims_table(df, reference),
              "paper_rouge": paper.rouge_comparison(df, reference).map(_fmt),
              "paper_cost": paper.cost_comparison(df, reference).map(_fmt)}
    paired = ("Δ: Rouge-L difference from Ferret's main configuration on the same eval examples (seeds "
              "averaged per example, paired t-test over examples) with its 95% t interval; * : p < 0.05. "
              if examples is not None else "No per-example scores (all_examples.csv): no paired differences. ")
    captions = {"main": "Final Rouge-L (%) and eval loss on held-out instances, mean ± std over seeds with the "
                        "95% Student-t interval over seeds ([k diverged], [k failed]: runs that diverged or failed, "
                        f"not in the mean). {paired}Beside the paper's Rouge-L. {main_note(df, examples)}",
                "cost": f"Cost per round; target eval loss {target:.3f}.",
                "claims": "The paper's headline claims (Fig. 1, App. C.2) by its own definitions: both sides' "
                          "absolute numbers (ours: mean [95% Student-t interval over seeds] (n runs)) and the "
                          "ratio baseline / Ferret (difference for the score).",
                "paper_rouge": "Final Rouge-L (%) beside the paper's (Tables 2, 3, 9), cell by cell: difference and "
                               "verdict in units of the combined standard error sqrt(s²/n + s_paper²/n_paper).",
                "paper_cost": "Cost per round per client in the paper's shape (Tables 4, 5, 10): seconds, parameters "
                              "exchanged (16-bit, up + down: measured bytes / 2) and measured bytes, and multiples of "
                              "Ferret's beside the paper's."}
    written = {}
    for name, table in tables.items():
        md = out / f"{name}.md"
        index = not isinstance(table.index, pd.RangeIndex)  # row numbers are not a column a reader needs
        atomic_write_text(md, f"{captions[name]}\n\n{table.to_markdown(index=index, disable_numparse=True)}\n")
        tex = out / f"{name}.tex"
        atomic_write_text(tex, table.to_latex(index=index, caption=captions[name], label=f"tab:{name}"))
        written[name] = md
    return written
