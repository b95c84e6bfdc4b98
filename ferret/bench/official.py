"""A faithful re-implementation of the official per-seed loop (github.com/allen4747/Ferret,
optimizers/ferret_optimizer.py: ``project_update`` and ``update``), kept only as the benchmark's
reference: per block and per seed, ``torch.manual_seed(seed)``, a fresh block-sized
``trunc_normal_(0, 1, -1/sqrt(d), 1/sqrt(d))`` basis and a dot product; the rebuild regenerates
each basis per seed and block, scales it, clips it to norm ``max_norm`` and subtracts it."""

from __future__ import annotations

import torch


def _basis(seed: int, size: int, device: torch.device) -> torch.Tensor:
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    bound = size**-0.5
    return torch.nn.init.trunc_normal_(torch.empty(size, device=device), mean=0.0, std=1.0, a=-bound, b=bound)


def official_project(blocks: list[torch.Tensor], seeds: list[int]) -> torch.Tensor:
    """(len(seeds), len(blocks)) coordinates <delta_b, v_{seed,b}> (the scaling d/n left out)."""
    coords = torch.zeros(len(seeds), len(blocks))
    for b, delta in enumerate(blocks):
        for k, seed in enumerate(seeds):
            coords[k, b] = torch.sum(delta * _basis(seed, delta.numel(), delta.device))
    return coords


def official_rebuild(coef: torch.Tensor, seeds: list[int], blocks: list[torch.Tensor],
                     slr: float = 1.0, max_norm: float = 10.0) -> None:
    """blocks[b] -= slr * clip(coef[k, b] v_{seed_k, b}) for every seed, in place (``update``)."""
    for k, seed in enumerate(seeds):
        for b, out in enumerate(blocks):
            base = _basis(seed, out.numel(), out.device)
            base.mul_(coef[k, b].item())
            norm = torch.linalg.norm(base)
            if torch.isfinite(norm):
                scale = max_norm / (norm + 1e-8)
                if scale < 1:
                    base.mul_(scale)
                out.sub_(slr * base)
