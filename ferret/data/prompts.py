"""Alpaca prompt templates and tokenisation with the prompt masked from the loss.

The templates are the two Alpaca templates used by the official Ferret / FedKSeed code (with and
without an input). Only the response is supervised: every prompt position gets label -100.
Each :class:`~ferret.data.types.Example` names its template (``Example.template``):

- ``alpaca`` (default; Natural Instructions, CodeAlpaca, GSM8K and the synthetic set): the
  Stanford Alpaca wording, as in the official NI loader (``natural_instruction_loader.py``).
- ``dolly``: the FederatedScope wording the official Dolly-15K loader uses (``llm_dataset.py``:
  "Write a response for the task request.").

Both official loaders end the prompt at "### Response:" and tokenise prompt + target as one
string; here the prompt ends with a newline and the two are encoded separately (below), so the
boundary is the same token position at training and generation time.

Choices (documented here because they change token counts):

- Prompt and output are encoded *separately* with ``add_special_tokens=False`` and concatenated,
  so the prompt/response boundary is exact and identical at training and generation time.
- A BOS token is prepended only when the tokenizer defines ``bos_token_id`` *and* encoding text
  with ``add_special_tokens=True`` would itself start with it (i.e. we mimic what the tokenizer
  would do on its own; SmolLM2, for one, adds no BOS). The probe looks at behaviour rather than the
  ``add_bos_token`` attribute because some fast tokenizers add BOS through their post-processor
  while reporting ``add_bos_token=False``.
- The response is followed by ``eos_token_id`` so the model learns to stop.
- Truncation to ``max_length`` cuts the response side (its tail, possibly the EOS); a prompt that
  leaves no room for even one response token is an error rather than a silently useless example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferret.data.types import DataError, Example

if TYPE_CHECKING:  # only for annotations: data modules must stay light to import
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # label value ignored by torch's cross-entropy

PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
DOLLY_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response for the task request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
DOLLY_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response for the task request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
# template name -> (with input, without input)
TEMPLATES: dict[str, tuple[str, str]] = {
    "alpaca": (PROMPT_INPUT, PROMPT_NO_INPUT),
    "dolly": (DOLLY_INPUT, DOLLY_NO_INPUT),
}


def format_prompt(ex: Example) -> str:
    """Render ``ex`` with its template; the no-input variant when its input is blank."""
    if ex.template not in TEMPLATES:
        raise DataError(f"unknown prompt template '{ex.template}' (task {ex.task}); known: {', '.join(TEMPLATES)}")
    with_input, no_input = TEMPLATES[ex.template]
    # Whitespace-only inputs count as empty: an "### Input:" block with nothing in it only adds noise.
    if ex.input.strip() == "":
        return no_input.format(instruction=ex.instruction)
    return with_input.format(instruction=ex.instruction, input=ex.input)


def _bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """``[bos_token_id]`` if the tokenizer would add BOS on its own, else ``[]``."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    probe = tokenizer.encode("a", add_special_tokens=True)
    return [bos] if probe and probe[0] == bos else []


def _encode_prompt(tokenizer: PreTrainedTokenizerBase, ex: Example, max_length: int) -> list[int]:
    ids = _bos_prefix(tokenizer) + list(tokenizer.encode(format_prompt(ex), add_special_tokens=False))
    if len(ids) >= max_length:
        raise DataError(
            f"max_length={max_length} is too small for a prompt of {len(ids)} tokens (task {ex.task})"
        )
    return ids


def prompt_ids(tokenizer: PreTrainedTokenizerBase, ex: Example, max_length: int) -> list[int]:
    """Token ids of the prompt alone (for generation), encoded exactly as in :func:`tokenize_example`.

    Raises DataError when the prompt does not fit in fewer than ``max_length`` tokens.
    """
    return _encode_prompt(tokenizer, ex, max_length)


def tokenize_example(
    tokenizer: PreTrainedTokenizerBase, ex: Example, max_length: int
) -> dict[str, list[int]]:
    """``input_ids`` = prompt + output + EOS; ``labels`` = -100 on the prompt, the ids elsewhere.

    The result is truncated to ``max_length`` on the response side. Raises DataError when the
    prompt alone takes ``max_length`` tokens or more, or the tokenizer has no EOS token.
    """
    eos: Any = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise DataError(f"tokenizer {type(tokenizer).__name__} defines no eos_token_id")
    prompt = _encode_prompt(tokenizer, ex, max_length)
    response = list(tokenizer.encode(ex.output, add_special_tokens=False)) + [eos]
    input_ids = (prompt + response)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt) + response)[:max_length]
    return {"input_ids": input_ids, "labels": labels}
