"""Zeroth-order machinery shared by FedZO (fedzo.py) and FedKSeed/-Pro (fedkseed.py): the
perturbation buffer, the forward-only loss and the official weight-decay rule, kept apart so
neither method file imports the other."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def decays(name: str) -> bool:
    """Whether weight decay applies to a tensor: the MeZO/FedKSeed official name rule."""
    return not any(s in name for s in ("bias", "layer_norm", "layernorm"))


class Direction:
    """The one parameter-sized buffer that holds the current perturbation z, with a view per
    trainable tensor (named order). All trainable tensors must share one device and dtype."""

    def __init__(self, named: Sequence[tuple[str, torch.Tensor]]) -> None:
        if not named:
            raise ValueError("zeroth-order methods need at least one trainable parameter")
        kinds = {(t.device, t.dtype) for _, t in named}
        if len(kinds) != 1:
            raise ValueError(f"trainable parameters span several devices/dtypes: {sorted(map(str, kinds))}")
        device, dtype = kinds.pop()
        self.names = [n for n, _ in named]
        self.numel = sum(t.numel() for _, t in named)
        self.flat = torch.empty(self.numel, dtype=dtype, device=device)
        self.views: list[torch.Tensor] = []
        start = 0
        for _, t in named:
            self.views.append(self.flat[start : start + t.numel()].view_as(t))
            start += t.numel()

    def fill_gaussian(self, seed: int) -> None:
        """z ~ N(0, I) from a generator on the buffer's device seeded with ``seed``: the same seed
        gives the same z on every client and on the server (on one device type)."""
        g = torch.Generator(device=self.flat.device)
        g.manual_seed(seed)
        self.flat.normal_(generator=g)

    def fill_sphere(self, seed: int) -> None:
        """z uniform on the sphere of radius sqrt(d) (so E[z z^T] = I)."""
        self.fill_gaussian(seed)
        norm = torch.linalg.vector_norm(self.flat, dtype=torch.float32).item()  # no float32 copy
        self.flat.mul_(math.sqrt(self.numel) / max(norm, 1e-30))

    @torch.no_grad()
    def add_to(self, tensors: list[torch.Tensor], alpha: float) -> None:
        """tensors += alpha * z (tensors in the buffer's named order)."""
        torch._foreach_add_(tensors, self.views, alpha=alpha)


@torch.no_grad()
def batch_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's mean token loss on a batch, as a float32 scalar tensor."""
    return model(**batch).loss.detach().float()


@torch.no_grad()
def weight_decay_(params: list[torch.Tensor], names: list[str], lr: float, wd: float) -> None:
    """w <- w - lr wd w on the tensors the official rule decays."""
    if wd > 0:
        decayed = [p for n, p in zip(names, params) if decays(n)]
        if decayed:
            torch._foreach_mul_(decayed, 1.0 - lr * wd)
