"""The paper-shaped tables, built from all_runs.csv (and the paper's numbers in results/reference/).

* Main table (Table 1 shape): one row per method configuration; per data set / model: final
  Rouge-L (%) by rouge-score and, where the runs have it, by the official metric (``rouge_l_official``,
  the paper's), and final eval loss, each mean ± std over seeds (n = number of seeds) beside a 95%
  interval that stays in its range (ferret/report/stats.py: the range of the seeds for n < 3; a
  bootstrap over examples and seeds where all_examples.csv has the per-example scores; else a t
  interval on the logit / log scale); the paired difference in Rouge-L from Ferret's main
  configuration on the shared eval set (a seeded bootstrap over the examples, and the seeds when
  both sides have three) with a mark where its interval excludes 0; and the paper's Rouge-L
  (``table{2,3,9}_rouge_l.csv``; "n/a" where it gives none), comparable with the official metric.
  :func:`main_note` states the number of seeds and eval examples behind it, and every table's
  caption repeats it.
* Cost table: per configuration, per-round local compute and encode seconds per client,
  aggregation seconds per round, bytes up and down per client per round, total bytes of the
  run, and the rounds needed to reach a target eval loss (default: the highest final eval loss
  of all configurations, which every one of them reaches, so the column compares speed).

* Claims and budget tables: ferret/report/claims.py; the paper comparisons: ferret/report/paper.py.
  :func:`write_tables` writes them all.

A configuration is (method, K, num_clients); its label shows K and N only where that method
was run with more than one value of them (ferret/report/runs.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ferret.atomic import atomic_write_text
from ferret.report import claims, paper, stats
from ferret.report.runs import (
    CONFIG,
    final_rows,
    finished,
    main_config_runs,
    read_reference,
    rounds_to_target,
    with_labels,
)


def _mean_std(values: pd.Series, scale: float = 1.0, digits: int = 1) -> str:
    values = values.dropna() * scale
    if values.empty:
        return "–"
    std = values.std(ddof=1) if len(values) > 1 else float("nan")
    text = f"{values.mean():.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if not math.isnan(std) else "") + f" (n = {len(values)})"


def _main_cell(runs: pd.DataFrame, column: str = "rouge_l") -> str:
    """Mean ± std over the runs that finished; diverged runs (status from run.json) are left out
    of the mean, since their last row is not a final result, and counted in the cell."""
    diverged = runs["status"].eq("diverged") if "status" in runs else pd.Series(False, index=runs.index)
    failed = runs["status"].eq("failed") if "status" in runs else pd.Series(False, index=runs.index)
    text = _mean_std(runs.loc[~diverged & ~failed, column], scale=100.0)
    return (text + (f" [{int(diverged.sum())} diverged]" if diverged.any() else "")
            + (f" [{int(failed.sum())} failed]" if failed.any() else ""))


def _loss_cell(runs: pd.DataFrame) -> str:
    """Final eval loss mean ± std over the runs that finished (diverged ones as in _main_cell)."""
    return _mean_std(finished(runs)["eval_loss"], digits=3)


def per_run_examples(runs: pd.DataFrame, examples: pd.DataFrame, column: str = "rouge_l") -> pd.DataFrame | None:
    """``column`` per eval example at each finished run's final round, as a runs × examples frame;
    None unless every run has a score for every example of the others (the bootstrap pairs them)."""
    if examples is None or column not in examples:
        return None
    final = finished(final_rows(runs))[["run_id", "round"]]
    rows = examples.merge(final, on=["run_id", "round"])
    if rows.empty or rows["run_id"].nunique() != len(final):
        return None
    table = rows.pivot_table(index="run_id", columns="example", values=column, aggfunc="mean")
    return None if table.isna().any().any() else table


def _interval_cell(runs: pd.DataFrame, column: str, domain: stats.Domain, scale: float = 1.0, digits: int = 1,
                   examples: pd.DataFrame | None = None) -> str:
    """The 95% interval of the mean over seeds of the final ``column``, of the kind its seeds
    allow (stats module docstring): with per-example scores and at least MIN_SEEDS seeds, the
    bootstrap over examples and seeds; else stats.summary (range for n < 3, transformed t)."""
    values = finished(runs)[column].dropna()

    def show(v: float) -> str:
        return f"{v:.{digits}f}"

    matrix = per_run_examples(runs, examples, column) if len(values) >= stats.MIN_SEEDS else None
    if matrix is not None:
        iv = stats.bootstrap_mean(matrix.to_numpy())
    else:
        iv = stats.summary(values.tolist(), domain)
    return stats.format_interval(iv.scaled(scale), show, centre=False)


def per_example_final(runs: pd.DataFrame, examples: pd.DataFrame, column: str = "rouge_l") -> pd.Series:
    """``column`` per eval example at each finished run's final round, averaged over the runs (seeds)."""
    final = finished(final_rows(runs))[["run_id", "round"]]
    rows = examples.merge(final, on=["run_id", "round"]).dropna(subset=[column])
    return rows.groupby("example")[column].mean()


def _seed_matrix(runs: pd.DataFrame, examples: pd.DataFrame, column: str) -> pd.DataFrame:
    """Final-round ``column`` as a seeds × examples frame (a seed's runs averaged), rows in seed order."""
    final = finished(final_rows(runs))[["run_id", "round", "seed"]]
    rows = examples.drop(columns=["seed"], errors="ignore").merge(final, on=["run_id", "round"])
    return rows.pivot_table(index="seed", columns="example", values=column, aggfunc="mean").sort_index()


def _paired_cells(runs: pd.DataFrame, ref_runs: pd.DataFrame, examples: pd.DataFrame,
                  column: str = "rouge_l") -> tuple[str, str]:
    """(Δ in points with its 95% paired bootstrap interval over examples (and seeds), significance
    mark) of ``runs`` against ``ref_runs`` on the same eval examples."""
    ours, ref = _seed_matrix(runs, examples, column), _seed_matrix(ref_runs, examples, column)
    if ours.empty or ref.empty:
        return "–", ""
    if set(ours.columns) != set(ref.columns) or ours.isna().any().any() or ref.isna().any().any():
        return "n/a (other examples)", ""
    if len(ours) == len(ref) and list(ours.index) == list(ref.index):
        pass  # the same seeds: stats.paired_bootstrap resamples them jointly
    columns = sorted(ours.columns)
    test = stats.paired_bootstrap(ours[columns].to_numpy(), ref[columns].to_numpy())
    over = "examples and seeds" if test.seeds_resampled else "examples"
    return (f"{100 * test.diff:+.1f} [{100 * test.low:+.1f}, {100 * test.high:+.1f}] ({over})",
            "*" if test.significant else "")


def _paper_cell(table1: pd.DataFrame, dataset: str, model: str, method: str) -> str:
    hit = table1[(table1["dataset"] == dataset) & (table1["model"] == model) & (table1["method"] == method)]
    if hit.empty or pd.isna(hit["rouge_l_mean"].iloc[0]):
        return "n/a"
    mean, std = float(hit["rouge_l_mean"].iloc[0]), hit["rouge_l_std"].iloc[0]
    return f"{mean:.1f}" + (f" ± {float(std):.1f}" if not pd.isna(std) else "")


OFFICIAL = "rouge_l_official"  # the `rouge` 1.0.1 package's Rouge-L F, the paper's own metric (0..1)


def has_official(df: pd.DataFrame) -> bool:
    """Whether the runs carry the official metric (runs made before it existed do not)."""
    return OFFICIAL in df and bool(df[OFFICIAL].notna().any())


def main_table(df: pd.DataFrame, reference: Path | None = None, examples: pd.DataFrame | None = None,
               method: str = "ferret") -> pd.DataFrame:
    """Per data set / model: final Rouge-L (%) by rouge-score and, where the runs have it, by the
    official metric, and the final eval loss, each mean ± std over seeds (a cell with diverged runs
    says how many; they are not in its mean) beside its 95% interval (stats module docstring:
    the range for fewer than three seeds); with ``examples`` (all_examples.csv), the paired
    difference in Rouge-L from ``method``'s main configuration with its bootstrap interval and a
    mark (*) where that interval excludes 0; and the paper's Rouge-L where the paper ran that
    data set and model."""
    labelled = with_labels(df)
    labelled["setting"] = labelled["dataset"] + " / " + labelled["model"]
    final = final_rows(labelled)
    _, table1 = read_reference(reference)
    scores = [("rouge_l", "Rouge-L (%)")] + ([(OFFICIAL, "Rouge-L official (%)")] if has_official(df) else [])
    columns = {}
    for setting, group in final.groupby("setting", sort=True):
        by_label = group.groupby("label")[list(group.columns)]
        for column, name in scores:
            columns[f"{setting}: {name}"] = by_label.apply(_main_cell, column=column)
            columns[f"{setting}: {name} 95% interval"] = by_label.apply(
                _interval_cell, column=column, domain=stats.FRACTION, scale=100.0, examples=examples)
        if examples is not None:
            all_rows = labelled[labelled["setting"] == setting]
            ref_runs = main_config_runs(all_rows, method)
            ref_label = ref_runs["label"].iloc[0] if not ref_runs.empty else None
            delta, mark = {}, {}
            for label, runs in all_rows.groupby("label"):
                if label == ref_label:
                    delta[label], mark[label] = "ref", ""
                    continue
                delta[label], mark[label] = _paired_cells(runs, ref_runs, examples) if ref_label else ("–", "")
            columns[f"{setting}: Δ Rouge-L vs {ref_label or method} (pts, paired bootstrap, 95%)"] = pd.Series(delta)
            columns[f"{setting}: differs (95%)"] = pd.Series(mark)
        columns[f"{setting}: eval loss"] = by_label.apply(_loss_cell)
        columns[f"{setting}: eval loss 95% interval"] = by_label.apply(
            _interval_cell, column="eval_loss", domain=stats.POSITIVE, digits=3, examples=examples)
        first = group.groupby("label").first()
        dataset, model = first["dataset"].iloc[0], first["model"].iloc[0]
        if not ((table1["dataset"] == dataset) & (table1["model"] == model)).any():
            continue  # a setting the paper did not run (e.g. the embedded default): no column of n/a
        columns[f"{setting}: paper Rouge-L (%)"] = pd.Series(
            {label: _paper_cell(table1, row["dataset"], row["model"], row["method"])
             for label, row in first.iterrows()})
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
        else:
            text += ", eval examples not counted (no all_examples.csv)"
        parts.append(text)
    return "Runs: " + "; ".join(parts) + "."


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
            "method": label, "seeds": int(runs["seed"].nunique()),
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
    budget, budget_note = claims.budget_table(df)
    tables = {"main": main_table(df, reference, examples), "cost": cost.map(_fmt),
              "claims": claims.claims_table(df, reference), "budget": budget,
              "paper_rouge": paper.rouge_comparison(df, reference).map(_fmt),
              "paper_cost": paper.cost_comparison(df, reference).map(_fmt)}
    paired = ("Δ: Rouge-L difference from Ferret's main configuration on the same eval examples, with its 95% "
              f"percentile bootstrap interval ({stats.RESAMPLES} resamples, seed {stats.BOOTSTRAP_SEED}) over the "
              f"examples, and over the seeds too where both sides have at least {stats.MIN_SEEDS} (otherwise seeds "
              "averaged per example); * : the interval excludes 0. "
              if examples is not None else "No per-example scores (all_examples.csv): no paired differences. ")
    official = ("Rouge-L by rouge-score (lowercased, punctuation dropped) and, as 'official', by the `rouge` 1.0.1 "
                "package the paper's code scores with; the paper's column compares with the official one. "
                if has_official(df) else
                "Rouge-L by rouge-score only: these runs predate the official metric, so the paper's column is "
                "not the same quantity. ")
    note = main_note(df, examples)
    captions = {"main": f"Final Rouge-L (%) and eval loss (mean token cross-entropy, nats) on held-out instances. "
                        f"{official}Each: mean ± std over seeds ([k diverged], [k failed]: runs that diverged or "
                        f"failed, not in the mean) and the 95% interval of the mean: with {stats.MIN_SEEDS} or more "
                        "seeds a bootstrap over examples and seeds where per-example scores exist, else a "
                        "Student-t interval on the logit (Rouge-L) or log (loss) scale, so it stays in range; "
                        f"with fewer seeds the range of the seeds with their number n. {paired}"
                        f"Beside the paper's Rouge-L. {note}",
                "cost": f"Cost per round (means over rounds and seeds; 'seeds': runs per configuration); "
                        f"target eval loss {target:.3f}.",
                "claims": "The paper's headline claims (Fig. 1, App. C.2; Table 4 for FedZO, Table 2 for FedAvg's "
                          "score, Rouge-L by the official code's metric, `rouge` 1.0.1) by its own definitions: "
                          "both sides' absolute numbers (ours: mean with the 95% "
                          "interval over seeds) and the ratio baseline / Ferret (difference Ferret − baseline for "
                          "the score) paired by seed. Ratios of costs are geometric means of the per-seed ratios, "
                          "with a Student-t interval on the log scale (always > 0); a quantity that does not vary "
                          "by seed (bytes of a fixed-size message) is exact, with no interval; with fewer than "
                          f"{stats.MIN_SEEDS} seeds the cell gives the range of the seeds and n. A direction holds "
                          "when the whole interval (or every seed, or the exact value) is on the paper's side of "
                          "1×; a 'comparable' score when Ferret is higher or the interval lies within "
                          f"±{claims.COMPARABLE_PTS:g} points. 'Not resolved' only where the data cannot tell.",
                "budget": "Cost to target and quality under budget, per method (main configuration), mean with "
                          "the 95% interval over seeds (as in the claims table): rounds and cumulative compute "
                          "seconds (overall = local + "
                          "aggregation s per client, summed over rounds) to a common eval loss half-way from the "
                          "untuned model's to the best method's final loss, and the eval loss reached within "
                          "Ferret's compute budget (its whole run); ratios and differences paired by seed; '> x×': "
                          f"a lower bound where a seed never reached the target. {budget_note}.",
                "paper_rouge": "Final Rouge-L (%) by the paper's own metric (the official code's `rouge` 1.0.1, "
                               "column rouge_l_official; not rouge-score's, which lowercases and drops punctuation) "
                               "beside the paper's (Tables 2, 3, 9), cell by cell: difference and "
                               "verdict in units of the combined standard error sqrt(s²/n + s_paper²/n_paper).",
                "paper_cost": "Cost per round per client in the paper's shape (Tables 4, 5, 10): seconds, parameters "
                              "exchanged (16-bit, up + down: measured bytes / 2) and measured bytes, and multiples of "
                              "Ferret's beside the paper's."}
    captions = {name: text if name == "main" else f"{text} {note}" for name, text in captions.items()}
    written = {}
    for name, table in tables.items():
        md = out / f"{name}.md"
        index = not isinstance(table.index, pd.RangeIndex)  # row numbers are not a column a reader needs
        atomic_write_text(md, f"{captions[name]}\n\n{table.to_markdown(index=index, disable_numparse=True)}\n")
        tex = out / f"{name}.tex"
        atomic_write_text(tex, table.to_latex(index=index, caption=captions[name], label=f"tab:{name}"))
        written[name] = md
    return written
