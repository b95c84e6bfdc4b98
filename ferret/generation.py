"""Greedy generation for Rouge-L, batched with left padding, for plain and peft-wrapped models.

A left-padded batch gives each prompt the positions it would get alone because ``generate``
numbers positions from the attention mask. peft's prompt-learning models (prompt tuning,
P-tuning) break that: they drop ``position_ids`` and prepend their virtual tokens *before* the
padding, so a padded prompt would sit further from its virtual tokens than in training. For
them :func:`generate` builds the input embeddings itself as ``[padding, virtual tokens, prompt]``
and calls the base model, so every row is numbered exactly as peft numbers it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of ``batch_size``, shortest first (a stable sort), so that a batch pads
    to its own longest item: the default eval set's 36 sequences of 70-98 tokens pad to 3,428
    tokens in batches of 16 in data order, to 3,192 sorted. Callers put results back in order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def is_prompt_learning(model: torch.nn.Module) -> bool:
    """True for peft prompt-learning models (prompt tuning, P-tuning)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _left_padded(chunk: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in chunk)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
    return ids, mask


def _virtual_then_prompt(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Input embeddings and mask laid out as [padding, virtual tokens, prompt] per row."""
    embed = model.get_base_model().get_input_embeddings()
    tokens = embed(ids)
    virtual = model.get_prompt(ids.shape[0]).to(tokens.dtype)
    rows, masks = [], []
    for i in range(ids.shape[0]):
        pads = int((mask[i] == 0).sum())
        rows.append(torch.cat([tokens[i, :pads], virtual[i], tokens[i, pads:]]))
        masks.append(torch.cat([mask[i, :pads], mask.new_ones(virtual.shape[1]), mask[i, pads:]]))
    return torch.stack(rows), torch.stack(masks)


@torch.no_grad()
def generate(model: torch.nn.Module, tokenizer: Any, prompts: list[list[int]], batch_size: int,
             max_new_tokens: int, device: torch.device) -> list[str]:
    """Greedy continuations of the prompts (token ids), decoded and stripped, in batches of
    similar length (:func:`length_batches`), returned in the prompts' order."""
    model.eval()
    pad = tokenizer.pad_token_id
    outputs = [""] * len(prompts)
    for batch in length_batches([len(p) for p in prompts], batch_size):
        ids, mask = _left_padded([prompts[i] for i in batch], pad, device)
        options = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1, "pad_token_id": pad}
        if is_prompt_learning(model):
            embeds, full_mask = _virtual_then_prompt(model, ids, mask)
            new = model.get_base_model().generate(inputs_embeds=embeds, attention_mask=full_mask, **options)
        else:
            new = model.generate(input_ids=ids, attention_mask=mask, **options)[:, ids.shape[1]:]
        for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
            outputs[i] = text.strip()
    return outputs
