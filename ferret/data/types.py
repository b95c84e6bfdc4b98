"""Plain data types shared by every data set loader.

Loaders return a :class:`FederatedData`; the engine turns its examples into token ids through
:mod:`ferret.data.prompts`. Nothing here knows about tokenizers or models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# A generation metric: (predictions, references) -> score, e.g. GSM8K's exact-match accuracy.
Metric = Callable[[Sequence[str], Sequence[str]], float]


class DataError(ValueError):
    """A bad data-set argument or instance; the message is one line and names the bad value."""


@dataclass(frozen=True)
class Example:
    """One instruction-tuning instance in the Natural Instructions style."""

    task: str  # task (family) name
    instruction: str  # the task definition (NI style)
    input: str
    output: str
    template: str = "alpaca"  # prompt template name (ferret.data.prompts.TEMPLATES)


def example_id(example: Example) -> str:
    """A stable id of an instance (examples.csv ``prompt_id``): a hash of its contents, so the same
    instance has the same id in every run, on every machine, wherever it sits in the eval set."""
    fields = [example.task, example.instruction, example.input, example.output, example.template]
    # The "ex" prefix keeps CSV readers from taking an all-digit (or "12e3...") hash for a number.
    return "ex" + hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


@dataclass
class FederatedData:
    """A federated data set: one local training set per client plus held-out evaluation instances."""

    clients: list[list[Example]]  # one list per client (its local training set)
    eval: list[Example]  # held-out evaluation instances
    client_tasks: list[str]  # task name of each client
    name: str  # data set name, e.g. "synthetic"
    # Extra metrics of the greedy generations, logged beside Rouge-L under their key (GSM8K: accuracy).
    metrics: dict[str, Metric] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A mismatch here would silently mislabel clients in every per-task report.
        if len(self.clients) != len(self.client_tasks):
            raise DataError(
                f"{len(self.clients)} client data sets but {len(self.client_tasks)} client task names"
            )

    @property
    def num_clients(self) -> int:
        return len(self.clients)
