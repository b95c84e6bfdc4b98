"""Plain data types shared by every data set loader.

Loaders return a :class:`FederatedData`; the engine turns its examples into token ids through
:mod:`ferret.data.prompts`. Nothing here knows about tokenizers or models.
"""

from __future__ import annotations

from dataclasses import dataclass


class DataError(ValueError):
    """A bad data-set argument or instance; the message is one line and names the bad value."""


@dataclass(frozen=True)
class Example:
    """One instruction-tuning instance in the Natural Instructions style."""

    task: str  # task (family) name
    instruction: str  # the task definition (NI style)
    input: str
    output: str


@dataclass
class FederatedData:
    """A federated data set: one local training set per client plus held-out evaluation instances."""

    clients: list[list[Example]]  # one list per client (its local training set)
    eval: list[Example]  # held-out evaluation instances
    client_tasks: list[str]  # task name of each client
    name: str  # data set name, e.g. "synthetic"

    def __post_init__(self) -> None:
        # A mismatch here would silently mislabel clients in every per-task report.
        if len(self.clients) != len(self.client_tasks):
            raise DataError(
                f"{len(self.clients)} client data sets but {len(self.client_tasks)} client task names"
            )

    @property
    def num_clients(self) -> int:
        return len(self.clients)
