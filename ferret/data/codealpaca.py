"""CodeAlpaca (code instructions): IID clients, a seeded held-out tenth for evaluation.

Input: the CodeAlpaca JSON list (``code_alpaca_20k.json``, or the sample ``codealpaca.json``),
a JSON-lines file, or the Hugging Face dataset id ``sahil2801/CodeAlpaca-20k`` (split
``train``); fields ``instruction``, ``input``, ``output``. The paper tunes LLaMA2-7B/13B on it;
the official Ferret code has no CodeAlpaca loader, so the split is this suite's choice: a
permutation fixed for every seed holds out ``HOLDOUT`` (10 %) of the records for evaluation,
and the rest are split IID among ``num_clients`` clients with the run's seed. Prompts use the
Alpaca template (no-input variant when ``input`` is blank); scored by Rouge-L.

``split="language"`` is the paper's setup (Ferret, Sec. 5 / App. C.1, after FederatedScope-LLM's
Fed-CodeAlpaca): only records in one of ten programming languages are kept, X86-64 assembly is
dropped, a uniform 10 % of the rest is held out, and each of the nine remaining languages is one
client (``num_clients`` must be 9). CodeAlpaca has no language field, so :func:`language` reads
it from the instruction and input by keywords (our heuristic): a record naming no language, or
more than one, is dropped. The list of languages is FederatedScope-LLM's as we recall it (C, C#,
C++, Go, Java, PHP, Pascal, Python, Scala, X86-64 assembly); the paper names none of them.
"""

from __future__ import annotations

import re

from ferret.data.partition import iid_partition, rng, task_partition
from ferret.data.records import expand, is_local, read_hub, read_local, require_path
from ferret.data.types import DataError, Example, FederatedData

NAME = "codealpaca"
HUB_ID = "sahil2801/CodeAlpaca-20k"
FIELDS = ("instruction", "input", "output")
HOLDOUT = 0.1  # share of the records held out for evaluation
SPLITS = ("iid", "language")
DROPPED = "x86-64 assembly"  # the paper drops it (too few records for a client)
# Keyword patterns per language, matched against instruction + input. Order = client order.
LANGUAGES: dict[str, re.Pattern[str]] = {
    "c": re.compile(r"(?<![\w+#.-])C(?![\w+#-])"),
    "c#": re.compile(r"(?<![\w])C#"),
    "c++": re.compile(r"(?<![\w])C\+\+"),
    "go": re.compile(r"\b(?:in|using|with|a|the) Go\b|\bGolang\b", re.IGNORECASE),
    "java": re.compile(r"\bJava\b(?!\s*[Ss]cript)"),
    "php": re.compile(r"\bPHP\b", re.IGNORECASE),
    "pascal": re.compile(r"\bPascal\b(?!'s)"),
    "python": re.compile(r"\bPython\b", re.IGNORECASE),
    "scala": re.compile(r"\bScala\b"),
    DROPPED: re.compile(r"\bx86(?:-64)?\b|\bassembly (?:language|code|program)", re.IGNORECASE),
}
CLIENT_LANGUAGES = [name for name in LANGUAGES if name != DROPPED]


def language(record: dict) -> str | None:
    """The one language a record's instruction and input name, or None (none or several)."""
    text = f"{record['instruction']}\n{record['input']}"
    found = [name for name, pattern in LANGUAGES.items() if pattern.search(text)]
    return found[0] if len(found) == 1 else None


def read_codealpaca(source: str) -> list[dict]:
    source = expand(source)
    if is_local(source):
        return read_local(NAME, require_path(NAME, source), FIELDS)
    return read_hub(NAME, source, "train", FIELDS)


def load_codealpaca(source: str, num_clients: int, seed: int, split: str = "iid") -> FederatedData:
    """IID clients (``split="iid"``) or one client per programming language (``"language"``)."""
    if split not in SPLITS:
        raise DataError(f"codealpaca_split={split!r}: must be one of {', '.join(SPLITS)}")
    if split == "language" and num_clients != len(CLIENT_LANGUAGES):
        raise DataError(f"{NAME}: codealpaca_split=language makes {len(CLIENT_LANGUAGES)} clients (one per "
                        f"language), got num_clients={num_clients}")
    records = read_codealpaca(source)
    if split == "language":
        langs = [language(r) for r in records]
        records = [r for r, lang in zip(records, langs) if lang in CLIENT_LANGUAGES]
        langs = [lang for lang in langs if lang in CLIENT_LANGUAGES]
    n_eval = max(1, int(len(records) * HOLDOUT))
    if len(records) - n_eval < num_clients:
        raise DataError(f"{NAME}: {len(records)} records in {source} are too few for {num_clients} clients "
                        f"after holding out {n_eval} for evaluation")
    # The held-out part is fixed across seeds so that every run is scored on the same records.
    order = rng(0, NAME, "holdout").permutation(len(records)).tolist()
    held_out, train = sorted(order[:n_eval]), order[n_eval:]
    if split == "language":
        train.sort()  # client contents do not depend on the holdout permutation's order
        present, groups = task_partition([langs[i] for i in train])
        missing = [lang for lang in CLIENT_LANGUAGES if lang not in present]
        if missing:
            raise DataError(f"{NAME}: no training record in {source} for language(s) {', '.join(missing)}")
        by_lang = dict(zip(present, groups))
        parts = [[train[j] for j in by_lang[lang]] for lang in CLIENT_LANGUAGES]
        names = list(CLIENT_LANGUAGES)
    else:
        cuts = iid_partition(len(train), num_clients, rng(seed, NAME, "partition"))
        parts = [[train[j] for j in part] for part in cuts]
        names = [f"client{c}" for c in range(num_clients)]

    def example(i: int) -> Example:
        r = records[i]
        return Example(task=NAME, instruction=r["instruction"], input=r["input"], output=r["output"])

    return FederatedData(clients=[[example(i) for i in part] for part in parts],
                         eval=[example(i) for i in held_out], client_tasks=names, name=NAME)
