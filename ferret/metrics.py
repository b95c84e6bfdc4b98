"""Evaluation metrics: eval loss, Rouge-L on greedy generations (rouge-score)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer

_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Rouge-L F-measure (0..1) of each prediction against its reference (kept per example so the
    reports can pair two methods example by example)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return [_SCORER.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean Rouge-L F-measure (0..1) of predictions against references, as the official code
    scores its final evaluation (per example, then averaged)."""
    scores = rouge_l_scores(predictions, references)
    return sum(scores) / len(scores) if scores else float("nan")


def _takes_logits_to_keep(model: torch.nn.Module) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


@torch.no_grad()
def example_losses(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token loss of each example in a right-padded batch (labels -100 are ignored).

    Only the positions from the first scored one on get logits (``logits_to_keep``, where the
    model takes it): the vocabulary projection of the prompt positions was most of an eval's cost
    and their logits are never scored. Prompt-learning models (peft prompt/P-tuning) prepend
    virtual tokens, which sit before the kept positions, so the same slice holds for them."""
    labels = batch["labels"][:, 1:]
    scored = (labels != -100).any(0).nonzero()
    first = int(scored[0]) if len(scored) else 0  # position t predicts token t + 1
    keep = batch["input_ids"].shape[1] - first
    options = {"logits_to_keep": keep} if _takes_logits_to_keep(model) else {}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **options).logits
    logits = logits[:, -keep:]
    labels = labels[:, first:]
    token_loss = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels, ignore_index=-100,
                                 reduction="none")
    counts = (labels != -100).sum(1).clamp(min=1)
    return token_loss.sum(1) / counts
