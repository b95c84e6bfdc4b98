"""The interface of a run's outputs (ferret/csv_sink.py, ferret/wandb_sink.py).

A run hands every finished round's row, every evaluation's per-example rows and its final status
to each of its sinks in turn (ferret/federation.py, ferret/engine.py); a new destination is one
class with these three methods in a module of its own, added to the run's list of sinks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["Sink"]


class Sink(Protocol):
    """A destination of a run's rows (their columns: ferret/csv_sink.py COLUMNS, EXAMPLE_COLUMNS)."""

    def log(self, row: Mapping[str, Any]) -> None:
        """Record one round's row; called once a round, in round order."""
        ...

    def log_examples(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record one evaluation's per-example rows (all of one round)."""
        ...

    def finish(self, summary: Mapping[str, Any], status: str) -> None:
        """The run ended with ``status`` (run.json's); ``summary``: its final numbers."""
        ...
