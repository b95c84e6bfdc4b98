"""Messages between server and clients, and their wire format.

A :class:`Message` holds named tensors and a few JSON-able scalars. :func:`encode` turns it into
the bytes a deployment would send: one safetensors blob (an 8-byte header length, a JSON header
with dtypes/shapes/offsets and the scalars under ``__metadata__``, then the raw tensor bytes).
The engine logs :func:`encoded_size` for every message in both directions: exactly
``len(encode(msg))``, computed from the header and the tensors' byte lengths without building the
serialised copy (a model-sized one per client for FedAvg and FedZO). Small uplinks are encoded and
decoded, and the *decoded* copy is what the server aggregates; a model-sized one is handed over as
is, which is what decoding would give bit for bit (safetensors stores the raw bytes of each tensor
in its own dtype; tests/test_comm_bytes.py checks both). The downlink is counted, not applied: the
round (ferret/federated_round.py) encodes it for its size, never decodes it, and resets the
client's working copy from the server's global weights
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
    return st_save(tensors, metadata=_metadata(msg))


def _metadata(msg: Message) -> dict[str, str] | None:
    return {_SCALARS_KEY: json.dumps(msg.scalars, separators=(",", ":"))} if msg.scalars else None


def encoded_size(msg: Message) -> int:
    """``len(encode(msg))``, without serialising the tensors.

    The blob is an 8-byte length, a JSON header padded with spaces to a multiple of 8, then every
    tensor's raw bytes. The header's length depends on each tensor's byte offsets, hence on the
    order safetensors lays the tensors out (by dtype, then name; the rule has changed between
    versions): that order is read from the serialiser itself on one-element stand-ins of the same
    names and dtypes, so the count follows whatever safetensors version is installed."""
    if not msg.tensors:
        return len(st_save({}, metadata=_metadata(msg)))
    stand_ins = {k: torch.zeros(1, dtype=v.dtype) for k, v in msg.tensors.items()}
    blob = st_save(stand_ins, metadata=_metadata(msg))
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    order = sorted(msg.tensors, key=lambda k: header[k]["data_offsets"][0])
    start = 0
    for k in order:
        t = msg.tensors[k]
        nbytes = t.numel() * t.element_size()
        header[k] = {"dtype": header[k]["dtype"], "shape": list(t.shape), "data_offsets": [start, start + nbytes]}
        start += nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return 8 + len(text) + (-len(text)) % 8 + start


def decode(blob: bytes) -> Message:
    """Inverse of :func:`encode`."""
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + header_len])
    scalars_json = header.get("__metadata__", {}).get(_SCALARS_KEY)
    scalars = json.loads(scalars_json) if scalars_json else {}
    return Message(tensors=dict(st_load(blob)), scalars=scalars)
