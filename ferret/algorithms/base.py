"""The one interface every federated method implements, and the round context the engine passes.

A round (ferret/federated_round.py, run by the engine and by ``ferret bench round``) is:

    for each sampled client c:
        msg = algo.downlink(c, ctx)            # server -> client (serialised, counted, not applied)
        algo.delivered(c, ctx)                 # the server records the delivery
        algo.load_global(model)                # reset the single working copy to the global weights
        loss = algo.local_train(model, batches, c, ctx)  # "local compute" phase
        up = algo.encode(model, c, ctx)        # "encode" phase -> uplink (serialised, counted)
        algo.receive(decode(up), p_c, ctx)     # fold it in as it arrives (p_c sums to 1)
    algo.aggregate(ctx)                        # finish the round: update the global model

Each round the method counts the entry updates its dtype rounds away (ferret/precision.py):
client steps into ``self.lost_local``, server steps on the global weights into
``self.lost_server``; the round takes both with :meth:`Algorithm.take_lost_updates`.

Uplinks are folded in one at a time so that the engine never holds more than the global
model, one working copy and the method's own (running) aggregate.

A method holds the global (server) state itself; the engine holds exactly one working copy of the
model, on the compute device. Where the server's model-sized state lives is the run's ``offload``
setting (:func:`store_device`): ``host`` (default) keeps the global weights and every model-sized
server buffer (running sums, reference weights) in host memory, pinned when the model is on CUDA,
and moves one tensor at a time to the compute device when it is needed there, as the official code
keeps its global copy on the CPU; ``device`` keeps them beside the model (faster, when it fits).
Server aggregates accumulate in float32 whatever the model's dtype. Methods compute and never log:
they return numbers and messages, the engine records them.
Between rounds the engine checkpoints ``algo.state_dict()`` (tensors and JSON values) and a
resumed run restores it with ``algo.load_state_dict`` right after ``setup`` (ferret/checkpoint.py).
A method whose global weights follow from the starting weights and a small record per round
(seeds and coordinates) sets ``replayable``: its ``state_dict`` leaves the weights out, the engine
keeps ``round_record()`` of every round, and a resume calls ``replay_round`` on each in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ferret import precision
from ferret.algorithms.local import sgd_local_steps
from ferret.algorithms.registry import NoOptions
from ferret.comm import Message
from ferret.precision import LostUpdates

OFFLOAD = ("host", "device")


def store_device(compute: torch.device, offload: str) -> torch.device:
    """The device of the server's model-sized state for a model on ``compute``: the host (CPU) for
    ``offload='host'``, the compute device itself for ``offload='device'``."""
    if offload not in OFFLOAD:
        raise ValueError(f"offload={offload!r}: must be one of {', '.join(OFFLOAD)}")
    return torch.device("cpu") if offload == "host" else torch.device(compute)


def host_buffer(like: torch.Tensor, store: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An uninitialised tensor of ``like``'s shape on ``store`` (dtype ``dtype`` or ``like``'s), in
    pinned memory when it is host memory serving a CUDA tensor (fast, asynchronous-capable copies)."""
    pin = store.type == "cpu" and like.device.type == "cuda"
    return torch.empty(like.shape, dtype=dtype or like.dtype, device=store, pin_memory=pin)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in the backward pass (long sequences): Hugging Face's non-reentrant
    checkpointing, and no KV cache during training, which checkpointing excludes."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the older name is deprecated)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        raise ValueError(f"gradient_checkpointing=true: {type(model).__name__} supports no activation checkpointing")
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False


@dataclass(frozen=True)
class RoundContext:
    """What a method may know about the current round."""

    round: int            # 1-based communication round
    rounds: int           # total rounds of the run
    seed: int             # the run's root seed
    device: torch.device


class Algorithm:
    """Base class: full-parameter training state kept as a CPU-or-device copy of the trainable weights.

    Subclasses implement ``downlink``, ``local_train``, ``encode`` and ``aggregate``; ``setup``
    selects the trainable parameters (PEFT methods override it). A registered method's options
    class is its registration's (ferret/methods/); a custom ``module:Class`` method sets
    ``Options`` (a frozen dataclass whose ``__post_init__`` validates).
    """

    Options: ClassVar[type] = NoOptions
    # True when downlink() builds the same message for every client of a round (the FedAvg family):
    # the round then counts its bytes once per round instead of once per client.
    shared_downlink: ClassVar[bool] = False
    # True: checkpoints hold round records instead of weights, and a resume replays them (see
    # round_record / replay_round); the weights are then rebuilt, not stored.
    replayable: ClassVar[bool] = False

    def __init__(self, cfg: Any, options: Any) -> None:
        self.cfg = cfg
        self.options = options
        self.global_params: dict[str, torch.Tensor] = {}
        self.compute_device = torch.device("cpu")  # set in setup: the working copy's device
        self.store_device = torch.device("cpu")    # set in setup: the server state's (store_device)
        self.lost_local = LostUpdates()   # this round's client steps (ferret/precision.py)
        self.lost_server = LostUpdates()  # this round's server steps on the global weights

    # -- state -------------------------------------------------------------------------------
    def setup(self, model: torch.nn.Module, tokenizer: Any) -> torch.nn.Module:
        """Take a copy of every trainable parameter as the global model, on the store device (the
        run's ``offload``), and return the model the engine should train and evaluate (PEFT methods
        return the adapter-wrapped model). Turns on gradient checkpointing when the run asks."""
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.compute_device = trainable[0][1].device if trainable else torch.device("cpu")
        self.store_device = store_device(self.compute_device, self.cfg.offload)
        self.global_params = {}
        with torch.no_grad():
            for n, p in trainable:
                self.global_params[n] = host_buffer(p, self.store_device).copy_(p)
        if self.cfg.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        return model

    def server_zeros(self, like: torch.Tensor) -> torch.Tensor:
        """A float32 zero buffer shaped like ``like`` on the store device: every model-sized server
        aggregate is one of these, so none lands on the compute device under ``offload='host'``."""
        return host_buffer(like, self.store_device, torch.float32).zero_()

    def local_lr(self) -> float:
        """The client step size: the method's own ``lr`` option when set (see
        :func:`ferret.methods._checks.check_lr_option`), else the run's ``lr``."""
        return getattr(self.options, "lr", 0.0) or self.cfg.lr

    def take_lost_updates(self) -> tuple[float, float]:
        """(local, server) fractions of this round's intended entry updates rounded away (NaN where
        none was intended); the counts restart for the next round."""
        fractions = self.lost_local.fraction(), self.lost_server.fraction()
        self.lost_local, self.lost_server = LostUpdates(), LostUpdates()
        return fractions

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """A fresh loss scaler for a client's first-order steps (mixed float16 only)."""
        return precision.grad_scaler(self.cfg.dtype, self.cfg.precision, device)

    def trainable(self, model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in model.named_parameters() if n in self.global_params]

    @torch.no_grad()
    def load_global(self, model: torch.nn.Module) -> None:
        """Reset the working copy to the global weights (no allocation; from the host one tensor's
        copy at a time under ``offload='host'``)."""
        for n, p in self.trainable(model):
            p.copy_(self.global_params[n])

    # -- checkpointing (ferret/checkpoint.py) ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the method needs to continue a run after a restart, taken between rounds:
        tensors (saved as safetensors) and JSON-able values (saved as JSON), under flat string keys.

        Default: the global trainable weights (the whole model for full-parameter methods, the
        adapter for PEFT ones), or nothing for a ``replayable`` method (replay rebuilds them).
        Methods with more server state (client sync rounds, seed probabilities) extend it; what
        ``setup`` rebuilds deterministically from the config (seeds, scratch buffers), what
        :meth:`replay_round` rebuilds, and per-round scratch need not be saved."""
        if self.replayable:
            return {}
        return {f"global/{n}": t for n, t in self.global_params.items()}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` after ``setup``, in place (devices and dtypes kept)."""
        if self.replayable:
            return
        missing = [n for n in self.global_params if f"global/{n}" not in state]
        if missing:
            raise ValueError(f"checkpoint holds no weights for {len(missing)} trainable tensors, e.g. {missing[0]}")
        for n, g in self.global_params.items():
            g.copy_(state[f"global/{n}"])

    def round_record(self) -> dict[str, Any]:
        """(``replayable`` methods) What :meth:`replay_round` needs to redo the round just
        aggregated: tensors and JSON values, kilobytes, including its ``round``."""
        raise NotImplementedError(f"method {self.name!r} is not replayable")

    def replay_round(self, record: Mapping[str, Any]) -> None:
        """(``replayable`` methods) Redo one round's server update from its :meth:`round_record`,
        on the global state as it stood before that round: the same operations on the same
        inputs as ``aggregate``, so the rebuilt weights equal the original bit for bit."""
        raise NotImplementedError(f"method {self.name!r} is not replayable")

    @torch.no_grad()
    def is_finite(self) -> bool:
        """False once the global state holds a NaN or Inf (the engine then stops: 'diverged')."""
        return all(bool(torch.isfinite(t).all()) for t in self.global_params.values())

    # -- one round ---------------------------------------------------------------------------
    def downlink(self, client: int, ctx: RoundContext) -> Message:
        """Build what the server sends ``client`` this round; changes no state (building it twice
        gives the same message), so it can be measured or rebuilt freely."""
        raise NotImplementedError

    def delivered(self, client: int, ctx: RoundContext) -> None:
        """Record that ``client`` received this round's downlink (the round calls it right after
        :meth:`downlink`). Default: nothing to record; seed-based methods note what it now holds."""

    def local_train(self, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    client: int, ctx: RoundContext) -> float:
        """Run the client's local work on the working copy; return its mean training loss.
        Default: first-order local SGD over the trainable parameters (Ferret, FedAvg); methods
        with other local work (zeroth-order, adapters with AdamW) override it."""
        cfg = self.cfg
        return sgd_local_steps(model, [p for _, p in self.trainable(model)], batches, lr=self.local_lr(),
                               n_accum=cfg.n_accum, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip,
                               scaler=self.grad_scaler(ctx.device), lost=self.lost_local)

    def encode(self, model: torch.nn.Module, client: int, ctx: RoundContext) -> Message:
        raise NotImplementedError

    def receive(self, msg: Message, weight: float, ctx: RoundContext) -> None:
        """Fold one client's uplink, with its normalised aggregation weight, into the round."""
        raise NotImplementedError

    def aggregate(self, ctx: RoundContext) -> None:
        """Finish the round: update the global model from what was received."""
        raise NotImplementedError
