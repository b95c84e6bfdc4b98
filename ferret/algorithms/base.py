"""The one interface every federated method implements, and the round context the engine passes.

A round (ferret/federated_round.py, run by the engine and by ``ferret bench round``) is:

    for each sampled client c:
        msg = algo.downlink(c, ctx)            # server -> client (serialised, counted, not applied)
        algo.load_global(model)                # reset the single working copy to the global weights
        loss = algo.local_train(model, batches, c, ctx)  # "local compute" phase
        up = algo.encode(model, c, ctx)        # "encode" phase -> uplink (serialised, counted)
        algo.receive(decode(up), p_c, ctx)     # fold it in as it arrives (p_c sums to 1)
    algo.aggregate(ctx)                        # finish the round: update the global model

Uplinks are folded in one at a time so that the engine never holds more than the global
model, one working copy and the method's own (running) aggregate.

A method holds the global (server) state itself; the engine holds exactly one working copy of the
model. Methods compute and never log: they return numbers and messages, the engine records them.
Between rounds the engine checkpoints ``algo.state_dict()`` (tensors and JSON values) and a
resumed run restores it with ``algo.load_state_dict`` right after ``setup`` (ferret/checkpoint.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ferret.algorithms.local import sgd_local_steps
from ferret.comm import Message


def check_lr_option(lr: object) -> None:
    """A method's own ``lr`` option: a finite number >= 0, where 0 means the run's ``lr``."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr >= 0 and math.isfinite(lr)):
        raise ValueError(f"lr={lr!r}: must be a finite number >= 0 (0 uses the run's lr)")


@dataclass(frozen=True)
class NoOptions:
    """For methods without options of their own."""


@dataclass(frozen=True)
class RoundContext:
    """What a method may know about the current round."""

    round: int            # 1-based communication round
    rounds: int           # total rounds of the run
    seed: int             # the run's root seed
    device: torch.device


class Algorithm:
    """Base class: full-parameter training state kept as a CPU-or-device copy of the trainable weights.

    Subclasses set ``name`` and, if they take options, ``Options`` (a frozen dataclass whose
    ``__post_init__`` validates), and implement ``downlink``, ``local_train``, ``encode`` and
    ``aggregate``. ``setup`` selects the trainable parameters; PEFT methods override it.
    """

    name: ClassVar[str] = "algorithm"
    Options: ClassVar[type] = NoOptions

    def __init__(self, cfg: Any, options: Any) -> None:
        self.cfg = cfg
        self.options = options
        self.global_params: dict[str, torch.Tensor] = {}

    # -- state -------------------------------------------------------------------------------
    def setup(self, model: torch.nn.Module, tokenizer: Any) -> torch.nn.Module:
        """Take a copy of every trainable parameter as the global model and return the model the
        engine should train and evaluate (PEFT methods return the adapter-wrapped model)."""
        self.global_params = {
            n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
        }
        return model

    def local_lr(self) -> float:
        """The client step size: the method's own ``lr`` option when set (see
        :func:`check_lr_option`), else the run's ``lr``."""
        return getattr(self.options, "lr", 0.0) or self.cfg.lr

    def trainable(self, model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in model.named_parameters() if n in self.global_params]

    @torch.no_grad()
    def load_global(self, model: torch.nn.Module) -> None:
        """Reset the working copy to the global weights (no allocation)."""
        for n, p in self.trainable(model):
            p.copy_(self.global_params[n])

    # -- checkpointing (ferret/checkpoint.py) ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the method needs to continue a run after a restart, taken between rounds:
        tensors (saved as safetensors) and JSON-able values (saved as JSON), under flat string keys.

        Default: the global trainable weights (the whole model for full-parameter methods, the
        adapter for PEFT ones). Methods with more server state (histories, momentum, seed
        probabilities, client sync rounds) extend it; what ``setup`` rebuilds deterministically
        from the config (seeds, scratch buffers) and per-round scratch need not be saved."""
        return {f"global/{n}": t for n, t in self.global_params.items()}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` after ``setup``, in place (devices and dtypes kept)."""
        missing = [n for n in self.global_params if f"global/{n}" not in state]
        if missing:
            raise ValueError(f"checkpoint holds no weights for {len(missing)} trainable tensors, e.g. {missing[0]}")
        for n, g in self.global_params.items():
            g.copy_(state[f"global/{n}"])

    @torch.no_grad()
    def is_finite(self) -> bool:
        """False once the global state holds a NaN or Inf (the engine then stops: 'diverged')."""
        return all(bool(torch.isfinite(t).all()) for t in self.global_params.values())

    # -- one round ---------------------------------------------------------------------------
    def downlink(self, client: int, ctx: RoundContext) -> Message:
        raise NotImplementedError

    def local_train(self, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    client: int, ctx: RoundContext) -> float:
        """Run the client's local work on the working copy; return its mean training loss.
        Default: first-order local SGD over the trainable parameters (Ferret, FedAvg); methods
        with other local work (zeroth-order, adapters with AdamW) override it."""
        cfg = self.cfg
        return sgd_local_steps(model, [p for _, p in self.trainable(model)], batches, lr=self.local_lr(),
                               n_accum=cfg.n_accum, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)

    def encode(self, model: torch.nn.Module, client: int, ctx: RoundContext) -> Message:
        raise NotImplementedError

    def receive(self, msg: Message, weight: float, ctx: RoundContext) -> None:
        """Fold one client's uplink, with its normalised aggregation weight, into the round."""
        raise NotImplementedError

    def aggregate(self, ctx: RoundContext) -> None:
        """Finish the round: update the global model from what was received."""
        raise NotImplementedError
