"""CodeAlpaca (code instructions): IID clients, a seeded held-out tenth for evaluation.

Input: the CodeAlpaca JSON list (``code_alpaca_20k.json``, or the sample ``codealpaca.json``),
a JSON-lines file, or the Hugging Face dataset id ``sahil2801/CodeAlpaca-20k`` (split
``train``); fields ``instruction``, ``input``, ``output``. The paper tunes LLaMA2-7B/13B on it;
the official Ferret code has no CodeAlpaca loader, so the split is this suite's choice: a
permutation fixed for every seed holds out ``HOLDOUT`` (10 %) of the records for evaluation,
and the rest are split IID among ``num_clients`` clients with the run's seed. Prompts use the
Alpaca template (no-input variant when ``input`` is blank); scored by Rouge-L.
"""

from __future__ import annotations

from ferret.data.partition import iid_partition, rng
from ferret.data.records import expand, is_local, read_hub, read_local, require_path
from ferret.data.types import DataError, Example, FederatedData

NAME = "codealpaca"
HUB_ID = "sahil2801/CodeAlpaca-20k"
FIELDS = ("instruction", "input", "output")
HOLDOUT = 0.1  # share of the records held out for evaluation


def read_codealpaca(source: str) -> list[dict]:
    source = expand(source)
    if is_local(source):
        return read_local(NAME, require_path(NAME, source), FIELDS)
    return read_hub(NAME, source, "train", FIELDS)


def load_codealpaca(source: str, num_clients: int, seed: int) -> FederatedData:
    records = read_codealpaca(source)
    n_eval = max(1, int(len(records) * HOLDOUT))
    if len(records) - n_eval < num_clients:
        raise DataError(f"{NAME}: {len(records)} records in {source} are too few for {num_clients} clients "
                        f"after holding out {n_eval} for evaluation")
    # The held-out part is fixed across seeds so that every run is scored on the same records.
    order = rng(0, NAME, "holdout").permutation(len(records)).tolist()
    held_out, train = sorted(order[:n_eval]), order[n_eval:]
    parts = iid_partition(len(train), num_clients, rng(seed, NAME, "partition"))

    def example(i: int) -> Example:
        r = records[i]
        return Example(task=NAME, instruction=r["instruction"], input=r["input"], output=r["output"])

    return FederatedData(clients=[[example(train[j]) for j in part] for part in parts],
                         eval=[example(i) for i in held_out],
                         client_tasks=[f"client{c}" for c in range(num_clients)], name=NAME)
