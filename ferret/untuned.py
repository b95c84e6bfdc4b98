"""The untuned model's evaluation, done once per (model, data set, eval set) and shared by the runs.

Round 0 scores the model before any training. For every full-parameter method (and LoRA, whose B
starts at zero) that model is the base model itself, so its round-0 scores are the same for every
method, seed and client count of a grid: ``ferret eval-untuned`` computes them once into a folder::

    <folder>/examples.csv   per-example eval loss, generation and scores (csv_sink.EXAMPLE_COLUMNS)
    <folder>/untuned.json   the identity below and the round-0 row (written last: its presence
                            means the folder is complete)

and ``ferret run untuned=<folder>`` takes its round-0 row from there. The run checks, before it
uses the folder, that the identity matches its own (model, dtype, device, eval settings and the
hash of the eval set's contents) — a mismatch is a wiring error — and that its own model at
round 0 gives exactly the stored loss of the first eval example alone in a batch (the probe:
cheap, and bit-exact for the same weights); a method whose
model at init differs from the base model (prompt tuning prepends virtual tokens) fails that check
and evaluates round 0 itself.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferret.config import ConfigError, keys_outside_evaluation
from ferret.csv_sink import EXAMPLE_COLUMNS
from ferret.data.types import Example

RECORD, EXAMPLES = "untuned.json", "examples.csv"
# Config keys that cannot change the untuned model or its eval set (declared on RunConfig's fields).
# Every other key is part of the folder's key (over-splitting costs one extra evaluation, never a
# wrong score; the content check below catches the rest).
TRAINING_KEYS = keys_outside_evaluation()


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def folder_key(config: dict[str, Any]) -> str:
    """``<model>_<dataset>_<hash of the eval-relevant keys and the per-example columns>``: one
    folder per untuned evaluation (a folder written with other columns gets a new key, so the
    workflow never reuses it)."""
    relevant = {**{k: v for k, v in config.items() if k not in TRAINING_KEYS}, "_columns": EXAMPLE_COLUMNS}
    slug = "".join(c if c.isalnum() or c in ".-" else "-" for c in f"{config['model']}_{config['dataset']}")
    return f"{slug}_{_digest(relevant)}"


def identity(config: dict[str, Any], eval_examples: Sequence[Example]) -> dict[str, Any]:
    """What must match for a run to use a folder: the eval-relevant keys and the eval set's contents."""
    return {"config": {k: v for k, v in config.items() if k not in TRAINING_KEYS},
            "eval_set": _digest([[ex.task, ex.input, ex.output] for ex in eval_examples]),
            "eval_examples": len(eval_examples), "columns": EXAMPLE_COLUMNS}


@dataclass(frozen=True)
class UntunedEval:
    """A finished untuned evaluation, as a run takes it for its round 0."""

    row: dict[str, Any]  # the round-0 row of metrics.csv
    examples: list[dict[str, Any]]  # its examples.csv rows
    probe_loss: float  # the first eval example's loss, alone in a batch: the run's model must match it


def load(folder: Path, config: dict[str, Any], eval_examples: Sequence[Example]) -> UntunedEval:
    """The evaluation in ``folder``, after checking it was made for this eval."""
    try:
        record = json.loads((folder / RECORD).read_text())
        with open(folder / EXAMPLES, newline="") as f:
            examples = list(csv.DictReader(f))
    except (OSError, ValueError) as e:
        raise ConfigError(f"untuned={folder}: not a finished `ferret eval-untuned` folder ({e})") from None
    mine = identity(config, eval_examples)
    if record.get("identity") != mine:
        theirs = record.get("identity", {})
        changed = sorted(k for k in set(theirs.get("config", {})) | set(mine["config"])
                         if theirs.get("config", {}).get(k) != mine["config"].get(k))
        if theirs.get("eval_set") != mine["eval_set"]:
            changed.append("eval set contents")
        if theirs.get("columns") != mine["columns"]:
            changed.append("per-example columns: made by another version")
        raise ConfigError(f"untuned={folder}: made for another evaluation (differs in {', '.join(changed)})")
    return UntunedEval(record["row"], [_typed(row) for row in examples], float(record["probe_loss"]))


def _typed(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row with its numbers back (repr-written floats round-trip exactly)."""
    out: dict[str, Any] = dict(row)
    for key, kind in (("round", int), ("example", int), ("eval_loss", float), ("rouge_l", float),
                      ("rouge_l_official", float)):
        out[key] = kind(row[key]) if row.get(key, "") != "" else None
    return out
