"""Recompute every generation metric from the kept texts alone: ``ferret rescore``.

Input: a run folder (its examples.csv, with run.json for the data set and metrics.csv for the
run's means), or any examples.csv / results/all_examples.csv. The rows that generated (their
``rouge_l`` cell is filled, csv_sink.EXAMPLE_COLUMNS) are scored again from ``prediction`` and
``reference`` with every per-example metric (metrics.PER_EXAMPLE) and, per (run, round), the
data set's own metrics (data.registry.dataset_metrics, e.g. GSM8K's accuracy). The means are
computed as the run computed them (metrics.mean, example order), so the same texts give the same
bits: :func:`check` lists every stored value that the recomputation does not reproduce exactly.

:func:`compare` sets the two Rouge-L implementations side by side per method at each run's final
round (or a given one): their means (%) and the distribution of the per-example difference
official - rouge-score.
Texts are read verbatim (no "NA" or "None" is taken for a missing value).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ferret.config import ConfigError
from ferret.data.registry import dataset_metrics
from ferret.data.types import DataError
from ferret.metrics import PER_EXAMPLE, mean

TEXT = ("prediction", "reference")
# Grouping of the comparison: the grid values that tell two configurations of a method apart.
CONFIG_COLUMNS = ("dataset", "model", "method", "num_clients", "K")


@dataclass
class Rescored:
    examples: pd.DataFrame  # the input rows, generated rows with the recomputed per-example columns
    means: pd.DataFrame  # one row per (run_id, round): the recomputed mean of each metric
    stored_means: pd.DataFrame | None  # metrics.csv of a run folder (None for a CSV input)
    stored_examples: pd.DataFrame  # the per-example columns as read


def read_examples(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """(rows as verbatim strings, the run's metrics.csv or None, the run's data set or '')."""
    metrics, dataset = None, ""
    if path.is_dir():
        try:
            config = json.loads((path / "run.json").read_text())["config"]
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"{path}: not a run folder: no readable run.json ({e})") from None
        dataset = str(config.get("dataset", ""))
        if (path / "metrics.csv").is_file():
            with open(path / "metrics.csv", newline="") as f:  # Python's float(): every digit, as written
                metrics = pd.DataFrame([{k: _float(v) if k not in ("run_id", "method") else v for k, v in row.items()}
                                        for row in csv.DictReader(f)])
        path = path / "examples.csv"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (give a run folder, an examples.csv or all_examples.csv)")
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("run_id", "round", "rouge_l", *TEXT) if c not in rows.columns]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} column: made before runs kept their texts, "
                        "so it cannot be rescored")
    return rows, metrics, dataset


def _metric_names(requested: Sequence[str], datasets: set[str]) -> tuple[list[str], dict[str, dict]]:
    """Per-example metrics to recompute, and per data set the data set metrics to recompute."""
    extra = {d: dataset_metrics(d) for d in datasets if d}
    known = [*PER_EXAMPLE, *sorted({m for ms in extra.values() for m in ms})]
    unknown = [m for m in requested if m not in known]
    if unknown:
        raise ConfigError(f"--metric {unknown[0]}: unknown here; known: {', '.join(known)}")
    chosen = list(requested) or known
    return ([m for m in chosen if m in PER_EXAMPLE],
            {d: {k: f for k, f in ms.items() if k in chosen} for d, ms in extra.items()})


def _run_keys(rows: pd.DataFrame) -> list[str]:
    """What identifies one run: its run_id, within its experiment where several are collected."""
    return ["experiment", "run_id"] if "experiment" in rows.columns else ["run_id"]


def rescore(path: Path, metrics: Sequence[str] = ()) -> Rescored:
    """Recompute ``metrics`` (all by default) for every generated row of ``path``."""
    rows, stored_means, run_dataset = read_examples(path)
    stored = rows.copy()
    generated = rows["rouge_l"] != ""
    if "dataset" not in rows.columns:
        rows["dataset"] = run_dataset
    per_example, by_dataset = _metric_names(metrics, set(rows.loc[generated, "dataset"]))
    out = rows.copy()
    means = []
    for key, group in rows[generated].groupby(_run_keys(rows) + ["round"], sort=False):
        group = group.sort_values("example", key=lambda s: s.astype(int)) if "example" in group else group
        preds, refs = group["prediction"].tolist(), group["reference"].tolist()
        row: dict[str, object] = {**dict(zip(_run_keys(rows), key)), "round": int(key[-1]), "examples": len(group)}
        for name in per_example:
            scores = PER_EXAMPLE[name](preds, refs)
            out.loc[group.index, name] = [repr(float(v)) for v in scores]
            row[name] = mean(scores)
        for name, fn in by_dataset.get(group["dataset"].iloc[0], {}).items():
            row[name] = fn(preds, refs)
        means.append(row)
    return Rescored(out, pd.DataFrame(means), stored_means, stored)


def check(result: Rescored) -> list[str]:
    """Every stored value the recomputation does not reproduce exactly (empty: all reproduced)."""
    problems = []
    for name in (c for c in PER_EXAMPLE if c in result.means.columns):
        if name not in result.stored_examples.columns:
            continue
        generated = result.stored_examples["rouge_l"] != ""
        old, new = result.stored_examples.loc[generated, name], result.examples.loc[generated, name]
        for i in old.index[[_float(a) != _float(b) for a, b in zip(old, new)]]:
            row = result.examples.loc[i]
            problems.append(f"{row['run_id']} round {row['round']} example {row.get('example', i)}: "
                            f"{name} stored {old[i] or 'empty'}, recomputed {new[i]}")
    if result.stored_means is not None:
        stored = result.stored_means.astype({"round": int}).set_index("round")
        for _, row in result.means.iterrows():
            for name in (c for c in result.means.columns if c not in ("experiment", "run_id", "round", "examples")):
                value = stored[name].get(row["round"], math.nan) if name in stored.columns else math.nan
                if not (_same(value, row[name])):
                    problems.append(f"{row['run_id']} round {row['round']}: metrics.csv {name} {value!r}, "
                                    f"recomputed {row[name]!r}")
    return problems


def _float(cell: str) -> float:
    return float(cell) if cell != "" else math.nan


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# `rouge` 1.0.1 adds 1e-8 to its F's denominator (a perfect match scores 0.99999999...): a
# per-example difference this small is no difference.
SAME_TOL = 1e-6


def compare(result: Rescored, round_: int | None = None) -> pd.DataFrame:
    """Per configuration (CONFIG_COLUMNS present), at each run's final generated round (or at
    ``round_``): mean Rouge-L (%) by rouge-score and by the official `rouge` 1.0.1, and the
    distribution of the per-example difference official - rouge-score (points)."""
    ex = result.examples[result.examples["rouge_l"] != ""].copy()
    if "rouge_l_official" not in result.means.columns or "rouge_l" not in result.means.columns:
        raise ConfigError("--compare needs both rouge_l and rouge_l_official (leave --metric out)")
    ex["round"] = ex["round"].astype(int)
    at = ex.groupby(_run_keys(ex))["round"].transform("max") if round_ is None else round_
    ex = ex[ex["round"] == at]
    if ex.empty:
        raise ConfigError(f"--round {round_}: no run generated at that round")
    ex["rouge_l"] = 100 * ex["rouge_l"].astype(float)
    ex["rouge_l_official"] = 100 * ex["rouge_l_official"].astype(float)
    ex["diff"] = ex["rouge_l_official"] - ex["rouge_l"]
    keys = [c for c in CONFIG_COLUMNS if c in ex.columns]
    rows = []
    for key, group in ex.groupby(keys, sort=True):
        d = group["diff"]
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                     "runs": len(group.groupby(_run_keys(group))), "examples": len(group),
                     "Rouge-L rouge-score (%)": group["rouge_l"].mean(),
                     "Rouge-L official (%)": group["rouge_l_official"].mean(),
                     "official − rouge-score (pts)": d.mean(),
                     "diff std": d.std(ddof=1) if len(d) > 1 else math.nan,
                     "diff min": d.min(), "diff median": d.median(), "diff max": d.max(),
                     "examples differing": f"{int((d.abs() > 100 * SAME_TOL).sum())} of {len(d)}",
                     "official lower": int((d < -100 * SAME_TOL).sum()),
                     "official higher": int((d > 100 * SAME_TOL).sum())})
    return pd.DataFrame(rows)
