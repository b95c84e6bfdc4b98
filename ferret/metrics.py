"""Evaluation metrics: eval loss, and Rouge-L of greedy generations by two implementations.

* ``rouge_l`` -- Google's ``rouge-score`` (``RougeScorer(["rougeL"])``): lowercases, drops
  punctuation, one LCS over the whole text.
* ``rouge_l_official`` -- the metric of the paper's code, computed by the package it used,
  ``rouge`` 1.0.1 (pinned: pyproject.toml, constraints-cpu.txt). That package keeps case and
  punctuation, splits sentences at every "." for a summary-level (union) LCS, and adds 1e-8 to
  its F's denominator (a perfect match scores 0.99999999...). So the two differ on the same
  (prediction, reference), rouge-score vs official: ("yes", "Yes") 1.0 vs 0.0, ("Positive.",
  "positive") 1.0 vs 0.0, ("1, 2, 3", "[1, 2, 3]") 1.0 vs 0.33, two swapped sentences 0.63 vs
  1.0. The paper's cells are compared with this one (ferret/report/paper.py, claims.py).

The official code (github.com/allen4747/Ferret at commit 1a412a9, ``evaluations.py``, line 1
``from rouge import Rouge``, line 4 ``rouge = Rouge()``) scores one example as::

    8   hyps = [tokenizer.decode(hyp_ids, skip_special_tokens=True)]
    9   if len(hyps[0]) == 0:
    10      return 0.0
    11  refs = [tokenizer.decode(ref_ids, skip_special_tokens=True)]
    12  try:
    13      rouge_score = rouge.get_scores(hyps, refs)[0]['rouge-l']['f']
    14  except ValueError:
    15      return 0.0

``Rouge()`` computes its default metrics, rouge-1, rouge-2 and rouge-l, so an error of any of
them scores 0; here too (``_OFFICIAL``). Its hypothesis is the generated tokens decoded with
``skip_special_tokens`` (ferret/generation.py decodes the same way and strips surrounding
whitespace, which ``rouge`` ignores); its reference is the target tokens decoded back, here
the reference text itself. The run's score is the mean over examples (``server.py``
``eval_generate``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from rouge import Rouge
from rouge_score import rouge_scorer

_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
_OFFICIAL = Rouge()  # default metrics, as evaluations.py line 4: their errors are caught alike


def rouge_l_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Rouge-L F-measure (0..1) of each prediction against its reference (kept per example so the
    reports can pair two methods example by example)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    # float(): rouge-score gives the int 0 where nothing matches; every score is a float here.
    return [float(_SCORER.score(ref, pred)["rougeL"].fmeasure) for pred, ref in zip(predictions, references)]


def rouge_l_official_score(prediction: str, reference: str) -> float:
    """Rouge-L F (0..1) of one prediction by the official code's rule (module docstring): an empty
    prediction or a ``ValueError`` of ``rouge`` 1.0.1 (e.g. no word outside full stops) scores 0."""
    if len(prediction) == 0:
        return 0.0
    try:
        return float(_OFFICIAL.get_scores([prediction], [reference])[0]["rouge-l"]["f"])
    except ValueError:
        return 0.0


def rouge_l_official_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """:func:`rouge_l_official_score` of each prediction against its reference."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return [rouge_l_official_score(pred, ref) for pred, ref in zip(predictions, references)]


# Per-example generation metrics, by their metrics.csv / examples.csv column: every run computes
# them all (ferret/evaluation.py) and `ferret rescore` recomputes them from the texts (ferret/rescore.py).
PER_EXAMPLE: dict[str, Callable[[Sequence[str], Sequence[str]], list[float]]] = {
    "rouge_l": rouge_l_scores,
    "rouge_l_official": rouge_l_official_scores,
}


def mean(scores: Sequence[float]) -> float:
    """The run's score from per-example scores: their plain mean in example order (NaN if none),
    summed the same way by the run and by the rescoring so that both give the same bits."""
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
