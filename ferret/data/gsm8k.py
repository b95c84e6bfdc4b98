"""GSM8K (grade-school maths): IID clients on the train split, the test split for evaluation.

Input: a folder holding ``train.jsonl`` and ``test.jsonl`` (github.com/openai/grade-school-math
layout) or the Hugging Face dataset id ``openai/gsm8k`` (config ``main``); fields ``question``
and ``answer`` (a worked solution ending in ``#### <number>``). The question is the instruction
(Alpaca template, no input) and the whole worked answer is the target, so the model learns to
reason and then write ``#### <number>``. The training records are split IID among
``num_clients`` clients (the official Ferret code has no GSM8K loader; this is our choice).

Besides Rouge-L, runs on GSM8K log ``accuracy``: the exact-match accuracy of the final number
(:func:`accuracy`). A reference's number is the one after its last ``####``; a prediction's is
the one after its last ``####`` when it has one, else its last number (a model that has not
learned the format still gets credit for a right final number). Numbers compare by value, with
thousands separators and a trailing ``.`` ignored ("1,000" = "1000" = "1000.00").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from ferret.data.partition import iid_partition, rng
from ferret.data.records import expand, is_local, read_hub, read_local, require_path
from ferret.data.types import DataError, Example, FederatedData

NAME = "gsm8k"
HUB_ID = "openai/gsm8k"
FIELDS = ("question", "answer")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _value(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "").rstrip("."))
    except InvalidOperation:
        return None


def final_number(text: str) -> Decimal | None:
    """The number after the last ``####`` (else the last number in ``text``), or None."""
    head, sep, tail = text.rpartition("####")
    numbers = _NUMBER.findall(tail if sep else text)
    if not numbers:
        return None
    return _value(numbers[0] if sep else numbers[-1])


def accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions whose final number equals the reference's (0..1)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return float("nan")
    hits = 0
    for pred, ref in zip(predictions, references):
        want = final_number(ref)
        hits += want is not None and final_number(pred) == want
    return hits / len(references)


# The generation metrics of this data set, by metrics.csv column (FederatedData.metrics).
METRICS = {"accuracy": accuracy}


def read_split(source: str, split: str) -> list[dict]:
    source = expand(source)
    if is_local(source):
        root = require_path(NAME, source)
        if not root.is_dir():
            raise DataError(f"{NAME}: data_path must be a folder with train.jsonl and test.jsonl, "
                            f"got the file {source}")
        path = root / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(f"{NAME}: {split} file not found: {path}")
        return read_local(NAME, path, FIELDS)
    return read_hub(NAME, source, split, FIELDS, config_name="main")


def _example(rec: dict) -> Example:
    return Example(task=NAME, instruction=rec["question"], input="", output=rec["answer"])


def load_gsm8k(source: str, num_clients: int, seed: int) -> FederatedData:
    """Clients: the train split, IID; eval: the test split; extra metric: final-number accuracy."""
    train = read_split(source, "train")
    test = read_split(source, "test")
    parts = iid_partition(len(train), num_clients, rng(seed, NAME, "partition"))
    return FederatedData(clients=[[_example(train[i]) for i in part] for part in parts],
                         eval=[_example(r) for r in test],
                         client_tasks=[f"client{c}" for c in range(num_clients)], name=NAME,
                         metrics=dict(METRICS))
