"""Tests for the Alpaca prompts and prompt-masked tokenisation, with tiny offline tokenizers."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from ferret.data.prompts import (
    IGNORE_INDEX,
    PROMPT_INPUT,
    PROMPT_NO_INPUT,
    format_prompt,
    prompt_ids,
    tokenize_example,
)
from ferret.data.synthetic import FAMILIES, build_synthetic
from ferret.data.types import DataError, Example

SPECIALS = ["[UNK]", "<s>", "</s>", "<pad>"]
EX = Example(
    task="reverse_words",
    instruction="Output the same words in reverse order.",
    input="red fox sun",
    output="sun fox red",
)
EX_NO_INPUT = Example(task="name_a_color", instruction="Name a color.", input="", output="blue")


def _vocab() -> dict[str, int]:
    pre = pre_tokenizers.Whitespace()
    words: list[str] = []
    texts = [PROMPT_INPUT, PROMPT_NO_INPUT, EX.instruction, EX.input, EX.output, EX_NO_INPUT.instruction, "blue"]
    texts += [f.definition for f in FAMILIES.values()]
    for t in texts:
        words += [w for w, _ in pre.pre_tokenize_str(t)]
    return {w: i for i, w in enumerate(dict.fromkeys(SPECIALS + words))}


def _tokenizer(add_bos: bool, with_eos: bool = True) -> PreTrainedTokenizerFast:
    tk = Tokenizer(models.WordLevel(_vocab(), unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    if add_bos:  # BOS added by the post-processor, as Llama-style fast tokenizers do
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    kw = {"eos_token": "</s>"} if with_eos else {}
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", pad_token="<pad>", unk_token="[UNK]", **kw)


@pytest.fixture(params=[False, True], ids=["no-bos", "bos"])
def tok(request: pytest.FixtureRequest) -> PreTrainedTokenizerFast:
    return _tokenizer(add_bos=request.param)


def test_templates_are_the_alpaca_ones() -> None:
    assert format_prompt(EX) == (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
        "Output the same words in reverse order.\n\n### Input:\nred fox sun\n\n### Response:\n"
    )
    assert format_prompt(EX_NO_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a color.\n\n### Response:\n"
    )
    assert "### Input:" not in format_prompt(EX_NO_INPUT)


@pytest.mark.parametrize("ex", [EX, EX_NO_INPUT], ids=["input", "no-input"])
def test_labels_mask_exactly_the_prompt(tok: PreTrainedTokenizerFast, ex: Example) -> None:
    p = prompt_ids(tok, ex, 256)
    out = tokenize_example(tok, ex, 256)
    ids, labels = out["input_ids"], out["labels"]
    assert set(out) == {"input_ids", "labels"}
    assert len(ids) == len(labels)
    assert ids[: len(p)] == p
    assert labels[: len(p)] == [IGNORE_INDEX] * len(p)
    assert labels[len(p) :] == ids[len(p) :]
    assert IGNORE_INDEX not in labels[len(p) :]
    response = tok.encode(ex.output, add_special_tokens=False) + [tok.eos_token_id]
    assert ids[len(p) :] == response
    assert tok.unk_token_id not in ids  # the test vocabulary covers the text, so ids are meaningful
    assert tok.decode(ids[len(p) : -1]) == ex.output


def test_bos_follows_tokenizer_behaviour() -> None:
    with_bos, without = _tokenizer(add_bos=True), _tokenizer(add_bos=False)
    a = tokenize_example(with_bos, EX, 256)
    b = tokenize_example(without, EX, 256)
    assert a["input_ids"][0] == with_bos.bos_token_id and a["labels"][0] == IGNORE_INDEX
    assert without.bos_token_id not in b["input_ids"]  # bos defined but not added by the tokenizer
    assert a["input_ids"][1:] == b["input_ids"]


def test_truncation_cuts_the_response(tok: PreTrainedTokenizerFast) -> None:
    n_prompt = len(prompt_ids(tok, EX, 256))
    full = tokenize_example(tok, EX, 256)
    for max_length in range(n_prompt + 1, len(full["input_ids"]) + 3):
        out = tokenize_example(tok, EX, max_length)
        assert len(out["input_ids"]) == len(out["labels"]) == min(max_length, len(full["input_ids"]))
        assert out["input_ids"] == full["input_ids"][:max_length]
        assert out["labels"] == full["labels"][:max_length]
        assert out["labels"][n_prompt] != IGNORE_INDEX  # at least one supervised token remains


@pytest.mark.parametrize("fn", [tokenize_example, prompt_ids])
def test_too_small_max_length_raises(tok: PreTrainedTokenizerFast, fn) -> None:
    n_prompt = len(prompt_ids(tok, EX, 256))
    for max_length in (n_prompt, n_prompt - 5, 1):
        with pytest.raises(DataError, match=f"max_length={max_length} ") as err:
            fn(tok, EX, max_length)
        assert f"{n_prompt} tokens" in str(err.value) and "reverse_words" in str(err.value)
        assert "\n" not in str(err.value)


def test_missing_eos_raises() -> None:
    with pytest.raises(DataError, match="eos_token_id"):
        tokenize_example(_tokenizer(add_bos=False, with_eos=False), EX, 256)


def test_synthetic_examples_tokenize(tok: PreTrainedTokenizerFast) -> None:
    # Every family's instances fit and keep a supervised response at a modest max_length.
    d = build_synthetic(len(FAMILIES), 2, 2, seed=0)
    for ex in d.eval:
        out = tokenize_example(tok, ex, 128)
        assert sum(lab != IGNORE_INDEX for lab in out["labels"]) >= 2  # output + eos
