"""Where a run's numbers go, one module a job; this module re-exports their names for the callers
that import them from here (ferret/report/ among them).

* ferret/atomic.py: atomic file writes (``atomic_write_text``, ``write_json``, ``remove_stale_temps``).
* ferret/redaction.py: secrets kept out of run.json, the W&B config and warnings.
* ferret/sink.py: the interface of a per-round sink (``Sink``), which the two below follow.
* ferret/csv_sink.py: metrics.csv and examples.csv (``CsvSink``, ``COLUMNS``, ``EXAMPLE_COLUMNS``).
* ferret/wandb_sink.py: Weights & Biases (``WandbSink``, ``log_report``, ``resolve_wandb_mode``).
* ferret/progress.py: the console progress bar (``Progress``).
"""

from __future__ import annotations

from ferret.atomic import atomic_write_text, remove_stale_temps, write_json
from ferret.csv_sink import COLUMNS, EXAMPLE_COLUMNS, CsvSink
from ferret.progress import Progress
from ferret.redaction import redact, secret_values
from ferret.sink import Sink
from ferret.wandb_sink import DEFAULT_WANDB_PROJECT, X_AXES, WandbSink, log_report, resolve_wandb_mode

__all__ = [
    "COLUMNS",
    "DEFAULT_WANDB_PROJECT",
    "EXAMPLE_COLUMNS",
    "X_AXES",
    "CsvSink",
    "Progress",
    "Sink",
    "WandbSink",
    "atomic_write_text",
    "log_report",
    "redact",
    "remove_stale_temps",
    "resolve_wandb_mode",
    "secret_values",
    "write_json",
]
