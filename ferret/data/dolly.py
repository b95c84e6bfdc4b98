"""Dolly-15K: clients by a Dirichlet over categories, one category held out for zero-shot evaluation.

Input: the ``databricks-dolly-15k.jsonl`` file (or a JSON list) or the Hugging Face dataset id
``databricks/databricks-dolly-15k`` (split ``train``); fields ``instruction``, ``context``,
``response``, ``category``. Preprocessing follows the official loader (Ferret / FedKSeed
``utils_data/load_data.py`` and ``llm_dataset.py``), re-implemented:

- Every record of the held-out category is an evaluation instance; the rest are training data.
  The official ``--zerotask 7`` indexes the sorted category names (pandas category codes):
  brainstorming, classification, closed_qa, creative_writing, general_qa,
  information_extraction, open_qa, summarization, so index 7 is ``summarization``, the default
  of ``eval_category`` here (a name, not an index, so a different category list cannot shift it).
- The training records are split among ``num_clients`` clients by the label-Dirichlet split
  (:func:`ferret.data.partition.dirichlet_partition`, official ``--iid dir0.5``: alpha 0.5, at
  least 10 records per client) or, with ``dirichlet_alpha=0`` (official ``--iid 0``), IID.
- Prompts use the FederatedScope wording of the official Dolly loader (template ``dolly``);
  ``context`` is the input, ``response`` the output.

The official ``--dataset_subsample`` (default 1.0, all records) is not offered.
"""

from __future__ import annotations

from ferret.data.partition import dirichlet_partition, iid_partition, rng
from ferret.data.records import expand, is_local, read_hub, read_local, require_path
from ferret.data.types import DataError, Example, FederatedData

NAME = "dolly"
HUB_ID = "databricks/databricks-dolly-15k"
FIELDS = ("instruction", "context", "response", "category")


def read_dolly(source: str) -> list[dict]:
    source = expand(source)
    if is_local(source):
        return read_local(NAME, require_path(NAME, source), FIELDS)
    return read_hub(NAME, source, "train", FIELDS)


def _example(rec: dict) -> Example:
    return Example(task=rec["category"], instruction=rec["instruction"], input=rec["context"],
                   output=rec["response"], template="dolly")


def load_dolly(source: str, num_clients: int, seed: int, alpha: float = 0.5,
               eval_category: str = "summarization") -> FederatedData:
    """Held-out category -> eval; the other records -> num_clients clients (Dirichlet or IID)."""
    records = read_dolly(source)
    categories = sorted({r["category"] for r in records})
    if eval_category not in categories:
        raise DataError(f"{NAME}: eval_category '{eval_category}' is not a category of {source} "
                        f"(categories: {', '.join(categories)})")
    train = [r for r in records if r["category"] != eval_category]
    held_out = [r for r in records if r["category"] == eval_category]
    if not train:
        raise DataError(f"{NAME}: {source} has no records outside the held-out category '{eval_category}'")
    g = rng(seed, NAME, "partition")
    if alpha > 0:
        parts = dirichlet_partition([r["category"] for r in train], num_clients, alpha, g)
    else:
        parts = iid_partition(len(train), num_clients, g)
    clients = [[_example(train[i]) for i in part] for part in parts]
    return FederatedData(clients=clients, eval=[_example(r) for r in held_out],
                         client_tasks=[f"client{c}" for c in range(num_clients)], name=NAME)
