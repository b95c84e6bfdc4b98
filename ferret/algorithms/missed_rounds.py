"""The "missed rounds" part of a seed-based downlink, shared by Ferret and FedKSeed.

Both methods keep a per-round history on the server and send each sampled client what its model
copy lacks since it last took part; this module owns that bookkeeping so the two cannot drift.
"""

from __future__ import annotations

from typing import TypeVar

import torch

T = TypeVar("T")


def missed_rounds(last_sync: dict[int, int], client: int,
                  history: list[T]) -> tuple[bool, list[T], dict[str, torch.Tensor]]:
    """(first contact?, the history entries ``client`` has not seen, ``{"rounds": their 1-based
    numbers}``); reads ``last_sync`` only (:func:`mark_synced` records the delivery)."""
    since = last_sync.get(client, 0)
    missed = history[since:]
    return client not in last_sync, missed, {"rounds": torch.arange(since + 1, since + 1 + len(missed),
                                                                    dtype=torch.int32)}


def mark_synced(last_sync: dict[int, int], client: int, history: list[T]) -> None:
    """Record that ``client`` now holds the whole history (its downlink was delivered)."""
    last_sync[client] = len(history)
