"""First-order local training shared by the methods whose clients run ordinary gradient steps."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ferret.precision import LostUpdates, observe_optimizer_step


def first_order_local_steps(model: torch.nn.Module, params: list[torch.nn.Parameter],
                            batches: Iterable[dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer, *,
                            n_accum: int, grad_clip: float = 0.0, scaler: torch.amp.GradScaler | None = None,
                            lost: LostUpdates | None = None) -> float:
    """Run ``optimizer`` (built over ``params``) over micro-batches, one step every ``n_accum`` of
    them (the official code's ``local_step``/``n_accum`` semantics), clipping the gradient norm of
    ``params`` first when ``grad_clip > 0``. Returns the mean micro-batch loss (NaN if none).

    ``scaler`` (mixed float16, ferret/precision.py) scales the loss and skips a step whose
    gradient overflowed; ``lost`` counts the entries each applied step rounds away."""
    model.train()
    losses: list[float] = []
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(batches, start=1):
        loss = model(**batch).loss
        (loss / n_accum if scaler is None else scaler.scale(loss / n_accum)).backward()
        losses.append(loss.item())
        if i % n_accum == 0:
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip and count the true gradient
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            step = LostUpdates() if lost is not None else None
            if step is not None:
                observe_optimizer_step(optimizer, step)
            if scaler is None:
                optimizer.step()
                skipped = False
            else:
                scale = scaler.get_scale()
                scaler.step(optimizer)
                scaler.update()
                skipped = scaler.get_scale() < scale  # the scale drops only on an overflow, whose step is skipped
            if step is not None and not skipped:
                lost.add(step)
            optimizer.zero_grad(set_to_none=True)
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return sum(losses) / len(losses) if losses else math.nan


def sgd_local_steps(model: torch.nn.Module, params: list[torch.nn.Parameter],
                    batches: Iterable[dict[str, torch.Tensor]], *, lr: float, n_accum: int,
                    momentum: float = 0.0, weight_decay: float = 0.0, grad_clip: float = 0.0,
                    scaler: torch.amp.GradScaler | None = None, lost: LostUpdates | None = None) -> float:
    """SGD over micro-batches (a fresh optimizer, so no momentum carries over between rounds);
    see :func:`first_order_local_steps`."""
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return first_order_local_steps(model, params, batches, optimizer, n_accum=n_accum, grad_clip=grad_clip,
                                   scaler=scaler, lost=lost)
