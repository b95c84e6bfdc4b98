"""A run's CSV outputs: metrics.csv (one row per round) and examples.csv (one row per evaluated
example), each a :class:`CsvTable`; :class:`CsvSink` writes both for a run (ferret/sink.py).

Each write rewrites the whole file atomically (ferret/atomic.py).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ferret.atomic import atomic_write_text

__all__ = ["COLUMNS", "EXAMPLE_COLUMNS", "CsvSink", "CsvTable"]

# The per-round columns, in order (empty where not measured that round). peak_mem_train_mb: the
# round's local-training peak (federated_round: local training, encode, aggregation; the paper's
# Table 6); peak_mem_eval_mb: the evaluation's peak. Both absolute MiB: CUDA max_memory_allocated
# after a reset at the phase's start; CPU the process's resident high-water mark, reset likewise.
COLUMNS = [
    "run_id", "method", "round", "clients", "train_loss", "eval_loss", "rouge_l", "rouge_l_official", "accuracy",
    "uplink_bytes", "downlink_bytes", "uplink_bytes_per_client", "downlink_bytes_per_client",
    "cum_bytes", "t_local_s", "t_encode_s", "t_aggregate_s", "t_eval_s", "t_round_s",
    "peak_mem_train_mb", "peak_mem_eval_mb",
    "lost_update_local", "lost_update_server",  # fractions 0..1 (ferret/precision.py)
]
# rouge_l: rouge-score's Rouge-L F; rouge_l_official: the official code's, by `rouge` 1.0.1
# (ferret/metrics.py). Both 0..1.
# examples.csv: one row per (evaluated round, eval example); `example` is the index in the eval
# set, which is fixed by the data (eval_seed), so rows of different runs pair one to one;
# `prompt_id` is a hash of the instance's contents (data.types.example_id). A round that generated
# (its rouge_l cell is filled) also holds the decoded `prediction` and the `reference` text, so
# every metric can be recomputed from the file alone (`ferret rescore`, ferret/rescore.py).
EXAMPLE_COLUMNS = ["run_id", "method", "round", "example", "prompt_id", "task", "eval_loss", "rouge_l",
                   "rouge_l_official", "prediction", "reference"]


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


class CsvTable:
    """metrics.csv with one row per round (or examples.csv with ``columns=EXAMPLE_COLUMNS``); the
    whole file is rewritten atomically at each call. ``rows`` (a resumed run's rows so far) are
    written at once."""

    def __init__(self, path: Path, rows: Iterable[Mapping[str, Any]] = (), columns: list[str] | None = None) -> None:
        self.path = path
        self.columns = COLUMNS if columns is None else columns
        self.rows: list[dict[str, Any]] = []
        for row in rows:
            self._add(row)
        if self.rows:
            self.write()

    def _add(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"unknown {self.path.name} columns: {sorted(unknown)}")
        self.rows.append({c: _cell(row.get(c)) for c in self.columns})

    def log(self, row: Mapping[str, Any]) -> None:
        self._add(row)
        self.write()

    def log_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Several rows in one rewrite (an evaluation's per-example rows)."""
        for row in rows:
            self._add(row)
        self.write()

    def write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


class CsvSink:
    """A run's metrics.csv and examples.csv in ``folder`` (the run's staging folder, ferret/outdir.py);
    ``rows``/``examples``: a resumed run's rows so far, written at once."""

    def __init__(self, folder: Path, rows: Iterable[Mapping[str, Any]] = (),
                 examples: Iterable[Mapping[str, Any]] = ()) -> None:
        self.metrics = CsvTable(folder / "metrics.csv", rows)
        self.examples = CsvTable(folder / "examples.csv", examples, columns=EXAMPLE_COLUMNS)

    def log(self, row: Mapping[str, Any]) -> None:
        self.metrics.log(row)

    def log_examples(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.examples.log_many(rows)

    def finish(self, summary: Mapping[str, Any], status: str) -> None:
        """Nothing is left to write: every row reached its file when it was logged."""
