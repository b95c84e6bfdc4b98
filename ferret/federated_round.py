"""One federated round, as ferret/algorithms/base.py states it, timed phase by phase.

Both the engine (``ferret run``, one call per round) and ``ferret bench round`` (one call for one
client) run :func:`federated_round`, so the phases and what each timer covers are written once:

    for each sampled client c:
        down = algo.downlink(c)                   # downlink_bytes: counted, not applied (below)
        algo.delivered(c)                         # the server records the delivery
        algo.load_global(model)                   # the working copy is reset from the global weights
        loss = algo.local_train(model, batches_of(c), c)   # t_local (mixed precision: under autocast)
        up = algo.encode(model, c)                # t_encode; uplink_bytes = comm.encoded_size(up)
        algo.receive(wire(up), p_c)               # t_aggregate (decode + receive) ...
    algo.aggregate()                              # ... + the final aggregate

Bytes are counted, not copied (:func:`ferret.comm.encoded_size`, exactly ``len(comm.encode(m))``).
A small uplink goes through the wire format (encode, decode) and the decoded copy is received; a
model-sized one (FedAvg, FedZO) is received as is, which the wire format would reproduce bit for
bit, so no serialised copy of the model is made per client. A method whose downlink is the same
for every client (``shared_downlink``: the FedAvg family) has it built and counted once per round.

Every timed phase ends with a device synchronisation, so asynchronous CUDA work is counted in the
phase that queued it. Building a client's batches is not timed.

The downlink is counted, not applied: its bytes are those of the message the method builds for
the client, serialised, and that message is then dropped. The client's working copy is reset from
the server's global weights with ``load_global`` instead of being rebuilt from the decoded
downlink, and a client's ``local_train`` and ``encode`` read the shared seeds (FedKSeed-Pro: the
seed probabilities) from the method object, the same values its downlink carries. For the FedAvg family the downlink
is those global weights; for Ferret and FedKSeed(-Pro) a client replaying the decoded downlink
lands on them (bit for bit; FedKSeed's ``merged`` downlink up to float rounding), which
tests/test_algorithms.py and tests/test_zo_baselines.py check. The uplink, by contrast, is decoded
and the decoded copy is what the server receives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ferret import comm, precision
from ferret.algorithms.base import Algorithm, RoundContext

Batches = list[dict[str, torch.Tensor]]


class Timer:
    """Accumulates wall seconds over every ``with`` block it times."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._t0


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class RoundResult:
    """What one round measured, summed over its sampled clients."""

    train_losses: list[float]  # each sampled client's mean local training loss, in sampled order
    uplink_bytes: int
    downlink_bytes: int        # counted, not applied (module docstring)
    t_local_s: float           # local_train
    t_encode_s: float          # algo.encode + counting its bytes
    t_aggregate_s: float       # decode + receive of every uplink, then aggregate
    lost_update_local: float = math.nan   # fraction of intended entry updates rounded away (ferret/precision.py)
    lost_update_server: float = math.nan

    @property
    def train_loss(self) -> float:
        """The round's training loss: the mean over its sampled clients."""
        return sum(self.train_losses) / len(self.train_losses)


# Uplinks up to this size go through encode + decode (the decode path runs every round); larger
# ones are model-sized weights, received as is (the module docstring says why that is exact).
WIRE_LIMIT_BYTES = 16 * 2**20


def wire(msg: comm.Message, size: int) -> comm.Message:
    """The message as the server receives it: decoded from its serialisation when ``size`` (its
    encoded size) is at most :data:`WIRE_LIMIT_BYTES`, else ``msg`` itself (bit-identical)."""
    return comm.decode(comm.encode(msg)) if size <= WIRE_LIMIT_BYTES else msg


def federated_round(algo: Algorithm, model: torch.nn.Module, sampled: Sequence[int], weights: Sequence[float],
                    batches_of: Callable[[int], Batches], ctx: RoundContext) -> RoundResult:
    """Run round ``ctx.round`` for the ``sampled`` clients on the one working copy ``model`` and
    update the method's global model. ``weights[c]`` is client c's aggregation weight (normalised
    over ``sampled`` here); ``batches_of(c)`` builds client c's local batches for this round.

    The downlink's bytes are counted and it is not applied: each client starts from
    ``algo.load_global(model)``, the server's global weights (module docstring)."""
    device = ctx.device
    total_w = sum(weights[c] for c in sampled)
    t_local, t_encode, t_agg = Timer(), Timer(), Timer()
    up_bytes = down_bytes = 0
    losses = []
    shared_down = comm.encoded_size(algo.downlink(sampled[0], ctx)) if algo.shared_downlink and sampled else None
    for c in sampled:
        down_bytes += shared_down if shared_down is not None else comm.encoded_size(algo.downlink(c, ctx))
        algo.delivered(c, ctx)
        algo.load_global(model)
        batches = batches_of(c)
        with t_local, precision.autocast(algo.cfg.dtype, algo.cfg.precision, device):
            losses.append(algo.local_train(model, batches, c, ctx))
            sync(device)
        with t_encode:
            up = algo.encode(model, c, ctx)
            size = comm.encoded_size(up)
            sync(device)
        up_bytes += size
        with t_agg:
            algo.receive(wire(up, size), weights[c] / total_w, ctx)
            sync(device)
        del up  # one client's uplink at a time
    with t_agg:
        algo.aggregate(ctx)
        sync(device)
    return RoundResult(losses, up_bytes, down_bytes, t_local.seconds, t_encode.seconds, t_agg.seconds,
                       *algo.take_lost_updates())
