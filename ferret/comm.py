"""Messages between server and clients, and their wire format.

A :class:`Message` holds named tensors and a few JSON-able scalars. :func:`encode` turns it into
the bytes a deployment would send: one safetensors blob (an 8-byte header length, a JSON header
with dtypes/shapes/offsets and the scalars under ``__metadata__``, then the raw tensor bytes).
The engine logs ``len(encode(msg))`` for every message in both directions. The uplink is
decoded and the *decoded* copy is what the server aggregates, so what is counted is what is used.
The downlink is counted, not applied: the round (ferret/federated_round.py) encodes it for its
size, never decodes it, and resets the client's working copy from the server's global weights
(``load_global``). For the FedAvg family the downlink is those weights; for Ferret and
FedKSeed(-Pro) replaying it on the client's stale copy gives them (bit for bit; FedKSeed's
``merged`` downlink up to float rounding), which their ``replay`` tests check.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

_SCALARS_KEY = "ferret.scalars"


@dataclass
class Message:
    """Named tensors plus small scalars (ints, floats, strings, lists of them)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)


def encode(msg: Message) -> bytes:
    """Serialise a message; tensors are moved to CPU and made contiguous (no copy if already so)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in msg.tensors.items()}
    metadata = {_SCALARS_KEY: json.dumps(msg.scalars, separators=(",", ":"))} if msg.scalars else None
    return st_save(tensors, metadata=metadata)


def decode(blob: bytes) -> Message:
    """Inverse of :func:`encode`."""
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_len])
    scalars_json = header.get("__metadata__", {}).get(_SCALARS_KEY)
    scalars = json.loads(scalars_json) if scalars_json else {}
    return Message(tensors=dict(st_load(blob)), scalars=scalars)
