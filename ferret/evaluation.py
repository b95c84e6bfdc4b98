"""Scoring the global model on the eval set: per-example token losses and generations, their
per-example scores (metrics.PER_EXAMPLE, e.g. Rouge-L both ways) and the data set's own metrics,
and when a run scores what (:func:`scheduled`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ferret import precision
from ferret.batches import collate
from ferret.config import RunConfig
from ferret.data.types import Example, Metric, example_id
from ferret.generation import generate, length_batches
from ferret.metrics import PER_EXAMPLE, example_losses, mean

__all__ = ["EvalSet", "eval_losses", "scheduled", "score"]


@dataclass
class EvalSet:
    examples: list[Example]
    tokenized: list[dict[str, list[int]]]  # prompt + answer, the answer's tokens labelled (eval loss)
    prompts: list[list[int]]  # the prompt alone (generation)
    metrics: dict[str, Metric] = field(default_factory=dict)  # the data set's extra generation metrics


def scheduled(cfg: RunConfig, round_: int) -> tuple[bool, bool]:
    """(eval loss, generation metrics) due at ``round_``: both at round 0 and at the last round,
    the loss every ``eval_every`` rounds, the generations every ``rouge_every`` (0: never between)."""
    ends = round_ == 0 or round_ == cfg.rounds
    return (ends or round_ % cfg.eval_every == 0,
            ends or bool(cfg.rouge_every and round_ % cfg.rouge_every == 0))


@torch.no_grad()
def eval_losses(model: torch.nn.Module, ev: EvalSet, cfg: RunConfig, pad_id: int, device: torch.device,
                limit: int | None = None) -> list[float]:
    """Per-example token loss of the first ``limit`` eval examples (all by default), in batches
    of eval_batch_size of similar length (generation.length_batches), in the examples' order;
    their mean is the official batch-1 eval loss."""
    model.eval()
    items = ev.tokenized[:limit]
    losses = [0.0] * len(items)
    for batch in length_batches([len(it["input_ids"]) for it in items], cfg.eval_batch_size):
        with precision.autocast(cfg.dtype, cfg.precision, device):
            values = example_losses(model, collate([items[i] for i in batch], pad_id, device)).tolist()
        for i, value in zip(batch, values):
            losses[i] = value
    return losses


def score(model: torch.nn.Module, tokenizer: Any, ev: EvalSet, cfg: RunConfig, device: torch.device, *,
          loss: bool, rouge: bool) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Eval loss and/or the generation metrics (metrics.PER_EXAMPLE, + the data set's): (their means,
    one row per example: its stable prompt_id and, where generated, the prediction and reference
    texts beside every per-example score)."""
    means: dict[str, float] = {}
    per_example: list[dict[str, Any]] = [{"example": i, "prompt_id": example_id(ex), "task": ex.task}
                                         for i, ex in enumerate(ev.examples)]
    if loss:
        losses = eval_losses(model, ev, cfg, tokenizer.pad_token_id, device)
        means["eval_loss"] = sum(losses) / len(losses)
        for row, value in zip(per_example, losses):
            row["eval_loss"] = value
    if rouge:
        references = [ex.output for ex in ev.examples]
        with precision.autocast(cfg.dtype, cfg.precision, device):
            predictions = generate(model, tokenizer, ev.prompts, cfg.eval_batch_size, cfg.max_new_tokens, device)
        for row, prediction, reference in zip(per_example, predictions, references):
            row.update(prediction=prediction, reference=reference)
        for name, scorer in PER_EXAMPLE.items():  # rouge_l (rouge-score) and rouge_l_official (rouge 1.0.1)
            scores = scorer(predictions, references)
            means[name] = mean(scores)
            for row, value in zip(per_example, scores):
                row[name] = value
        means.update({name: fn(predictions, references) for name, fn in ev.metrics.items()})
    return means, per_example
