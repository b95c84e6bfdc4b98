"""What a run carries from one round to the next: everything a checkpoint saves besides the
method's own state and the RNGs (ferret/checkpoint.py), so that a resumed run writes the same
metrics.csv, examples.csv and W&B run as an uninterrupted one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunState"]


@dataclass
class RunState:
    """The rounds finished so far and the run's bookkeeping. JSON values only, except the tensors
    of a replayable method's round records (the checkpoint stores those in its safetensors file)."""

    wandb_id: str  # the W&B run this run logs to; a resume continues it
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv rows of rounds 0..last, raw values
    examples: list[dict[str, Any]] = field(default_factory=list)  # examples.csv rows so far
    records: list[dict[str, Any]] | None = None  # replayable methods: Algorithm.round_record() of rounds 1..last
    init: str | None = None  # replayable methods: checkpoint.weights_digest of the starting weights
    resumed_from: list[int] = field(default_factory=list)  # the rounds this run resumed after, in order
    round0: str | None = None  # where round 0's scores came from (this run's evaluation or a shared one)

    @property
    def last_round(self) -> int | None:
        """The last round logged (0: only the untuned evaluation), or None before round 0."""
        return self.rows[-1]["round"] if self.rows else None
