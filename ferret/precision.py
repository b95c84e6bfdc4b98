"""Training precision: the dtype the weights live in, the dtype the arithmetic runs in, and how
many of the intended updates the weights' dtype rounds away.

Two settings (RunConfig ``precision``), with ``dtype`` float32, bfloat16 or float16:

| precision      | weights (client copy and global) | forward / backward        | loss scaling      |
|----------------|----------------------------------|---------------------------|-------------------|
| pure (default) | ``dtype``                        | ``dtype``                 | none              |
| mixed          | float32 (master weights)         | ``dtype`` (torch.autocast) | float16: GradScaler |

``pure`` with ``dtype: float16`` is the official Ferret and FedKSeed code: the model is loaded in
float16 and trained with plain SGD, no autocast, no loss scaling, and FedKSeed's perturbations
are drawn in the weights' dtype. torch's CPU kernels run float16 matmuls, backward and
``normal_`` (torch >= 2.1), so the same setting runs on CPU and GPU.

``mixed`` is what a careful practitioner runs: float32 master weights with 16-bit compute, by
``torch.autocast`` rather than a 16-bit working copy beside the masters, because (a) the
optimizer then steps the float32 weights themselves (no copy-back, no second model), (b) one
code path serves first-order, zeroth-order and adapter methods alike (autocast changes only the
forward's matmuls; the ZO perturbations and Ferret's projection stay float32), and (c) it is
torch's own AMP. Its cost is float32 weights (twice a float16 model's memory). Evaluation runs
under the same autocast. With float16, first-order steps use ``torch.amp.GradScaler`` with its
defaults (scale 2**16, halved and the step skipped on an Inf/NaN gradient): a fresh one per
client's local run, like the optimizer, so a resumed run replays the same steps. bfloat16 has
float32's range and needs no scaling.

Lost updates (metrics.csv ``lost_update_local`` and ``lost_update_server``): of the entries an
update step should change -- its float32 update ``delta`` (e.g. ``-lr * g``) is nonzero -- the
fraction that keep their value in the weights' dtype. A step ``w.add_(delta, alpha=a)`` is
checked before it is applied, tensor by tensor, with the arithmetic of torch's kernels
(:meth:`LostUpdates.observe`). For plain SGD (the official optimizer), the zeroth-order steps and
Ferret's rebuild this is exactly what the step does; for momentum, weight decay and Adam it is
the float32 step rounded once (tests/test_precision.py compares both with the weights before and
after). Even float32 loses updates: SmolLM2's tied embedding/output matrix gets a softmax-tail
gradient on every vocabulary row, far below float32's spacing at its weights. Counts are summed
over every step of every sampled client of a round (local) and over every server step of the round
(server: Ferret's per-block rebuild,
FedKSeed's per-seed steps); temporaries are one chunk of one tensor, never a model copy.
FedAvg-family servers average the clients' weights instead of adding an update: there an entry is
intended where the float32 average differs from the old weight, and lost where its value in the
weights' dtype does not.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

_CHUNK = 1 << 22    # entries per temporary: a 16 MB float32 chunk whatever the tensor's size
# The temporaries themselves, one set per (device, dtype, role), reused by every count: a fresh
# 16 MB tensor per chunk per step made the count 4x slower than these buffers, spent in page faults
# (0.37 s against 0.09 s for 3e7 float32 entries on one core of an AMD EPYC). At most ~32 MB a device.
_BUFFERS: dict[tuple[torch.device, torch.dtype, str], torch.Tensor] = {}


def _buffer(role: str, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A reusable temporary of ``like``'s size (at most one chunk), on its device, in ``dtype``."""
    key = (like.device, dtype, role)
    buf = _BUFFERS.get(key)
    if buf is None:
        buf = _BUFFERS[key] = torch.empty(_CHUNK, dtype=dtype, device=like.device)
    return buf[: like.numel()]


def storage_dtype(dtype: str, precision: str) -> str:
    """The dtype the model's weights are loaded and kept in: float32 for mixed, else ``dtype``."""
    return "float32" if precision == "mixed" else dtype


def autocast(dtype: str, precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward/backward context: torch.autocast to ``dtype`` for mixed precision, else none."""
    if precision != "mixed":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, dtype))


def grad_scaler(dtype: str, precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A fresh loss scaler for mixed float16 (bfloat16 and pure precision need none)."""
    if precision == "mixed" and dtype == "float16":
        return torch.amp.GradScaler(device.type)
    return None


class LostUpdates:
    """Counts of intended and rounded-away entry updates (see the module docstring)."""

    def __init__(self) -> None:
        self.intended = 0
        self.lost = 0

    @torch.no_grad()
    def observe(self, param: torch.Tensor, delta: torch.Tensor, scale: float = 1.0, *, kernel: bool = True) -> None:
        """The step ``param.add_(delta.to(param.dtype), alpha=scale)``, checked before it is applied.
        Intended: the entries where float32(delta) * scale != 0. Lost: those the step leaves
        unchanged, computed by torch's own ``add`` kernel into a temporary (so rounded exactly as
        the step: in the weights' dtype, with ``alpha`` as the kernel takes it).
        ``kernel=False``: a float32 step rebuilt elsewhere, ``param + scale * delta`` rounded once."""
        p, d = param.detach().reshape(-1), delta.detach().reshape(-1)
        intended = lost = 0
        for pc, dc in zip(p.split(_CHUNK), d.split(_CHUNK)):
            step = _buffer("step", dc, torch.float32)
            if dc.dtype == torch.float32:
                torch.mul(dc, scale, out=step)
            else:  # the product in float32, not in the delta's own dtype
                step.copy_(dc).mul_(scale)
            moved = torch.count_nonzero(step)
            if kernel:
                if dc.dtype != pc.dtype:
                    dc = _buffer("delta", dc, pc.dtype).copy_(dc)
                new = torch.add(pc, dc, alpha=scale, out=_buffer("new", pc, pc.dtype))
            else:
                new = torch.add(step, pc, out=_buffer("sum", pc, torch.float32))
                if pc.dtype != torch.float32:
                    new = _buffer("new", pc, pc.dtype).copy_(new)
            kept = torch.eq(new, pc, out=_buffer("kept", pc, torch.bool))
            # Lost: the kept among the moved. Where every entry moved (dense gradients, ZO
            # directions) that is every kept one; the test syncs with the device, so CUDA always masks.
            if pc.device.type == "cpu" and int(moved) == pc.numel():
                lost += torch.count_nonzero(kept)
            else:
                lost += torch.count_nonzero(kept.logical_and_(step != 0))
            intended += moved
        self.intended += int(intended)
        self.lost += int(lost)

    @torch.no_grad()
    def observe_values(self, old: torch.Tensor, intended: torch.Tensor, stored: torch.Tensor) -> None:
        """A replacement ``old -> stored`` whose float32 target was ``intended``."""
        chunks = zip(*(t.detach().reshape(-1).split(_CHUNK) for t in (old, intended, stored)))
        moved_n = lost_n = 0
        for oc, ic, sc in chunks:
            old32 = oc if oc.dtype == torch.float32 else _buffer("old", oc, torch.float32).copy_(oc)
            moved = torch.ne(ic, old32, out=_buffer("moved", oc, torch.bool))
            kept = torch.eq(sc, old32, out=_buffer("kept", oc, torch.bool))
            moved_n += torch.count_nonzero(moved)
            lost_n += torch.count_nonzero(kept.logical_and_(moved))
        self.intended += int(moved_n)
        self.lost += int(lost_n)

    def add(self, other: LostUpdates) -> None:
        self.intended += other.intended
        self.lost += other.lost

    def fraction(self) -> float:
        """lost / intended; NaN when no step intended a change (the CSV cell stays empty)."""
        return self.lost / self.intended if self.intended else math.nan


@torch.no_grad()
def observe_optimizer_step(optimizer: torch.optim.Optimizer, counter: LostUpdates) -> None:
    """Count, before ``optimizer.step()``, what the step will round away. The float32 update is
    rebuilt from the optimizer's own state: SGD (weight decay, momentum, dampening, nesterov) and
    Adam/AdamW (decoupled or L2 weight decay, bias correction; not amsgrad). Other optimizers
    raise: their update is not known here."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                delta, alpha, kernel = _update(optimizer, group, p)
                counter.observe(p, delta, alpha, kernel=kernel)


def _update(optimizer: torch.optim.Optimizer, group: dict[str, Any],
            p: torch.Tensor) -> tuple[torch.Tensor, float, bool]:
    """(delta, alpha, kernel): ``optimizer.step()`` is about to add alpha * delta to ``p``. Plain
    SGD (the official optimizer) is ``p.add_(grad, alpha=-lr)``, checked as the kernel computes it;
    otherwise delta is the float32 step rebuilt from the optimizer's state (alpha 1, kernel False)."""
    if isinstance(optimizer, torch.optim.SGD) and not group["weight_decay"] and not group["momentum"]:
        return p.grad, -group["lr"], True
    g, w, lr, wd = p.grad.float(), p.float(), group["lr"], group["weight_decay"]
    state = optimizer.state.get(p, {})
    if isinstance(optimizer, torch.optim.SGD):
        if wd:
            g = g + wd * w
        if group["momentum"]:
            buf = state.get("momentum_buffer")
            buf = g if buf is None else group["momentum"] * buf.float() + (1 - group["dampening"]) * g
            g = g + group["momentum"] * buf if group["nesterov"] else buf
        return -lr * g, 1.0, False
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) and not group["amsgrad"]:
        b1, b2 = group["betas"]
        decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay", False)
        if wd and not decoupled:
            g = g + wd * w
        t = int(state["step"]) + 1 if "step" in state else 1
        m = (b1 * state["exp_avg"].float() if "exp_avg" in state else 0.0) + (1 - b1) * g
        v = (b2 * state["exp_avg_sq"].float() if "exp_avg_sq" in state else 0.0) + (1 - b2) * g * g
        denom = (v / (1 - b2 ** t)).sqrt() + group["eps"]
        step = -(lr / (1 - b1 ** t)) * m / denom
        return (step - lr * wd * w if wd and decoupled else step), 1.0, False
    raise TypeError(f"optimizer {type(optimizer).__name__}: its update is not known to lost-update counting")
