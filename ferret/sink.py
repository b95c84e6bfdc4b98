"""The interface of a per-round metrics sink (ferret/csv_sink.py, ferret/wandb_sink.py).

A run hands every finished round's row to each of its sinks in turn; a new destination is one
class with a ``log`` method in a module of its own, added to the run's list of sinks
(ferret/engine.py). A sink's own set-up and final call (such as WandbSink.finish) stay its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["Sink"]


class Sink(Protocol):
    """A destination of the per-round rows (their columns: ferret/csv_sink.py COLUMNS)."""

    def log(self, row: Mapping[str, Any]) -> None:
        """Record one round's row; called once a round, in round order."""
        ...
