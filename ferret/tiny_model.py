"""The ``"tiny"`` model: a random-init two-layer LLaMA (about 74 k non-embedding parameters) with the
SmolLM2 tokenizer, for tests and CI only. Its weights depend only on ``seed``; its tokenizer comes
from the small tokenizer cache (ferret/model_cache.py), never from the full model conversion.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ferret.model_aliases import ALIASES
from ferret.model_cache import smollm2_tokenizer

if TYPE_CHECKING:  # pragma: no cover - only for annotations
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def tiny_model(seed: int, root: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh tiny model whose weights are a function of ``seed`` alone, and a tokenizer of its own."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    entry = ALIASES["tiny"]
    tokenizer = smollm2_tokenizer(root)
    pad_id = tokenizer.pad_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id if pad_id is None else pad_id,
        **entry["config"],
    )
    # fork_rng keeps the caller's global RNG stream untouched while making the weights a
    # function of `seed` alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    # This instance only: the shared cached tokenizer keeps SmolLM2's 8192.
    tokenizer.model_max_length = min(tokenizer.model_max_length, config.max_position_embeddings)
    return model, tokenizer

