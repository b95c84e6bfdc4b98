"""Evaluation metrics: eval loss, Rouge-L on greedy generations (rouge-score)."""

from __future__ import annotations

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


@torch.no_grad()
def example_losses(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token loss of each example in a right-padded batch (labels -100 are ignored).

    Prompt-learning models (peft prompt/P-tuning) prepend virtual tokens, so their logits are
    longer than the input: only the last ``L`` positions, those of the ``L`` input tokens, are
    scored. For a plain model the slice is the whole sequence."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, -batch["input_ids"].shape[1]:]
    labels = batch["labels"][:, 1:]
    token_loss = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels, ignore_index=-100,
                                 reduction="none")
    counts = (labels != -100).sum(1).clamp(min=1)
    return token_loss.sum(1) / counts
