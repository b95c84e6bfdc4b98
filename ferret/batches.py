"""What each round trains on: the seeded client sample and every sampled client's micro-batches
(the engine's rounds, ``ferret bench round`` and the tests all build them here)."""

from __future__ import annotations

import torch

from ferret.config import RunConfig
from ferret.seeding import generator

__all__ = ["client_batches", "collate", "sample_clients"]


def _pad_right(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def collate(items: list[dict[str, list[int]]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded training/eval batch; padding is masked in attention and labels."""
    ids = _pad_right([it["input_ids"] for it in items], pad_id)
    mask = _pad_right([[1] * len(it["input_ids"]) for it in items], 0)
    labels = _pad_right([it["labels"] for it in items], -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def client_batches(data: list[dict[str, list[int]]], cfg: RunConfig, round_: int, client: int,
                   pad_id: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """local_steps micro-batches of batch_size, walking seeded permutations of the client's data;
    with local_epochs = N > 0, N whole permutations instead (the last micro-batch may be smaller)."""
    g = generator(cfg.seed, "batches", round_, client)
    order: list[int] = []
    if cfg.local_epochs:
        for _ in range(cfg.local_epochs):
            order += torch.randperm(len(data), generator=g).tolist()
        steps = -(-len(order) // cfg.batch_size)
    else:
        steps = cfg.local_steps
        while len(order) < steps * cfg.batch_size:
            order += torch.randperm(len(data), generator=g).tolist()
    return [collate([data[i] for i in order[s * cfg.batch_size : (s + 1) * cfg.batch_size]], pad_id, device)
            for s in range(steps)]


def sample_clients(cfg: RunConfig, round_: int) -> list[int]:
    """The clients of round ``round_``: max(1, int(N * participation)) of them, seeded, without
    replacement, in increasing order."""
    return sorted(torch.randperm(cfg.num_clients, generator=generator(cfg.seed, "sample", round_))
                  [:cfg.clients_per_round].tolist())
