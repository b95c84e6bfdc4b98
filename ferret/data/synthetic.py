"""The embedded default data set: procedurally generated multi-task instructions (NI style).

Twenty task families, each with a Natural-Instructions-style definition and a generator that draws
an (input, output) pair from a ``random.Random``. Inputs are short (a few words or numbers) and
outputs are a handful of tokens, and every output is fully determined by the input and the
definition, so a 135M-parameter model can learn the formats within a few federated rounds.

Partition (``build_synthetic``):

- ``families=None`` means every family, in the order of :data:`FAMILY_ORDER` (the order below).
- Client ``i`` gets family ``families[i % F]``: one task per client, as in the paper's NI setup.
  When ``num_clients > F`` several clients share a family; they get disjoint instances (no input
  appears in two clients' training sets), and no training input of a family equals one of its
  evaluation inputs.
- The evaluation set holds ``eval_per_task`` instances of every family in ``families``, listed
  in family order. An evaluation instance depends only on (eval_seed, family), so the evaluation
  set depends neither on ``num_clients`` nor on the run's ``seed``: every method, seed and client
  count of a grid is scored on the same instances (``eval_seed`` is its own config key, 0 by
  default; the library call falls back to ``seed`` when it is not given). With fewer clients than
  families, the families without a client are evaluated zero-shot (the cost of a small federation: fewer tasks covered).
- Client ``i``'s data depends on (seed, family, i) and on the inputs already taken by the
  (fixed) evaluation set and by lower-index clients of its family, so adding clients never changes the
  data of existing ones.

Determinism: each RNG is a ``random.Random`` seeded from a SHA-256 digest of
``"seed|family|client|split"`` (never Python's salted ``hash()``), so the data are identical
across processes and machines.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from ferret.data.types import DataError, Example, FederatedData

GenerateFn = Callable[[random.Random], tuple[str, str]]

# --- vocabulary --------------------------------------------------------------------------------
# Common, lowercase, purely alphabetic English words (3-7 letters) so that word-level tasks have
# unambiguous answers and short token sequences.
NOUNS: tuple[str, ...] = tuple(
    """
    apple arm baby bag ball bank bed bell bird boat book boot bowl box boy bread brick bridge
    brush cake camel candle car card cat chair cheese child clock cloud coat coin cow cup desk
    dog doll door dream drum duck eagle egg eye farm field fish flag floor flower fork fox frog
    garden gate girl glass goat grape grass hand hat heart hill horse house island jacket jar
    key king kite knife lake lamp leaf lemon lion map market melon milk monkey moon mouse
    nest night nose ocean onion orange owl paper park pen pencil piano pig pillow plate pocket
    queen rabbit rain ring river road robot rock roof rose sand school sea seed sheep shell ship
    shoe shop sky snake snow sock spoon star stone storm street sugar sun table teacher tent
    tiger tomato tower town toy train tree truck turtle wall watch water whale wheel window
    wind wolf world zebra anchor basket bottle button carpet circle corner cotton doctor
    engine feather forest guitar hammer helmet honey insect kitchen ladder letter magnet mirror
    needle parrot pepper planet pond puppy rocket saddle salt shadow shirt sister spider
    spring sweater ticket valley wagon wallet
    """.split()
)
ADJECTIVES: tuple[str, ...] = tuple(
    """
    big small tall short happy sad red blue green yellow black white brown pink purple old
    young new hot cold warm cool fast slow loud quiet soft hard dark bright clean dirty empty
    full heavy light long rich poor sweet sour quick brave calm busy lazy kind proud shy wild
    funny gentle little huge tiny round sharp smooth strong weak wet dry early late
    """.split()
)
VERBS: tuple[str, ...] = tuple(
    """
    saw found liked took made had wanted needed painted cleaned opened closed watched visited
    carried pushed pulled moved kept held built bought sold drew chased fed washed
    lost touched kicked lifted dropped fixed filled counted named helped
    """.split()
)
WORDS: tuple[str, ...] = NOUNS + ADJECTIVES + VERBS
VOWELS = frozenset("aeiou")


# --- small helpers used by the generators --------------------------------------------------------
def _numbers(rng: random.Random, lo: int, hi: int, k_lo: int, k_hi: int) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(k_lo, k_hi))]


def _distinct_words(rng: random.Random, k_lo: int, k_hi: int, pool: tuple[str, ...] = WORDS) -> list[str]:
    # Distinct words keep "reverse/sort/swap" answers unambiguous to the eye and to Rouge-L.
    return rng.sample(pool, rng.randint(k_lo, k_hi))


def _csv(items: list[int] | list[str]) -> str:
    return ", ".join(str(x) for x in items)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    f = 2
    while f * f <= n:
        if n % f == 0:
            return False
        f += 1
    return True


def _sentence(rng: random.Random) -> str:
    adj, noun, verb, obj = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS), rng.choice(NOUNS)
    definite = rng.random() < 0.5
    tail = obj if rng.random() < 0.5 else f"{rng.choice(ADJECTIVES)} {obj}"
    # "a"/"an" agrees with the next word so the sentences read as ordinary English.
    det = "the" if definite else ("an" if tail[0] in VOWELS else "a")
    return f"the {adj} {noun} {verb} {det} {tail}"


# --- generators: (rng) -> (input, output) ---------------------------------------------------------
def _reverse_words(rng: random.Random) -> tuple[str, str]:
    w = _distinct_words(rng, 3, 5)
    return " ".join(w), " ".join(reversed(w))


def _sort_numbers(rng: random.Random) -> tuple[str, str]:
    # Three numbers: SmolLM2 spends one token per digit, so longer lists exceed ~12 output tokens.
    x = _numbers(rng, 0, 99, 3, 3)
    return _csv(x), _csv(sorted(x))


def _add_numbers(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"{a}, {b}", str(a + b)


def _subtract_numbers(rng: random.Random) -> tuple[str, str]:
    # Keep the difference non-negative: a minus sign adds a token and an extra failure mode.
    a, b = sorted((rng.randint(0, 99), rng.randint(0, 99)), reverse=True)
    return f"{a}, {b}", str(a - b)


def _multiply_numbers(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    return f"{a}, {b}", str(a * b)


def _uppercase(rng: random.Random) -> tuple[str, str]:
    phrase = " ".join(_distinct_words(rng, 2, 3))
    return phrase, phrase.upper()


def _count_vowels(rng: random.Random) -> tuple[str, str]:
    text = " ".join(_distinct_words(rng, 1, 2))
    return text, str(sum(c in VOWELS for c in text))


def _first_elements(rng: random.Random) -> tuple[str, str]:
    w = _distinct_words(rng, 4, 6)
    i = rng.randint(1, 3)
    return f"{i}; {_csv(w)}", _csv(w[:i])


def _last_word(rng: random.Random) -> tuple[str, str]:
    s = _sentence(rng)
    return s, s.split()[-1]


def _max_number(rng: random.Random) -> tuple[str, str]:
    x = _numbers(rng, 0, 99, 3, 5)
    return _csv(x), str(max(x))


def _min_number(rng: random.Random) -> tuple[str, str]:
    x = _numbers(rng, 0, 99, 3, 5)
    return _csv(x), str(min(x))


def _even_odd(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(0, 9999)
    return str(n), "Even" if n % 2 == 0 else "Odd"


def _is_prime_task(rng: random.Random) -> tuple[str, str]:
    # Draw primes half of the time: uniform numbers would be ~85% "No" and teach a constant answer.
    want_prime = rng.random() < 0.5
    while True:
        n = rng.randint(2, 1999)
        if _is_prime(n) == want_prime:
            return str(n), "Yes" if want_prime else "No"


def _repeat_word(rng: random.Random) -> tuple[str, str]:
    word, n = rng.choice(WORDS), rng.randint(2, 4)
    return f"{word}, {n}", " ".join([word] * n)


def _hyphen_join(rng: random.Random) -> tuple[str, str]:
    w = _distinct_words(rng, 3, 4)
    return " ".join(w), "-".join(w)


def _list_length(rng: random.Random) -> tuple[str, str]:
    w = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
    return _csv(w), str(len(w))


def _sort_words(rng: random.Random) -> tuple[str, str]:
    w = _distinct_words(rng, 3, 4)
    return " ".join(w), " ".join(sorted(w))


def _spell_word(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS)
    return word, " ".join(word)


def _swap_words(rng: random.Random) -> tuple[str, str]:
    w = _distinct_words(rng, 3, 4)
    swapped = [w[-1], *w[1:-1], w[0]]
    return " ".join(w), " ".join(swapped)


def _first_letters(rng: random.Random) -> tuple[str, str]:
    w = _distinct_words(rng, 3, 5)
    return " ".join(w), " ".join(x[0] for x in w)


# --- the families -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskFamily:
    """A task: its name, its NI-style definition and a generator of (input, output) pairs."""

    name: str
    definition: str
    generate: GenerateFn


_FAMILY_LIST: tuple[TaskFamily, ...] = (
    TaskFamily(
        "reverse_words",
        "In this task, you are given a list of words separated by spaces. "
        "Output the same words in reverse order, separated by spaces.",
        _reverse_words,
    ),
    TaskFamily(
        "sort_numbers",
        "In this task, you are given a list of numbers separated by commas. "
        "Sort the numbers in ascending order and output them separated by commas.",
        _sort_numbers,
    ),
    TaskFamily(
        "add_numbers",
        "In this task, you are given two numbers separated by a comma. Output their sum.",
        _add_numbers,
    ),
    TaskFamily(
        "subtract_numbers",
        "In this task, you are given two numbers separated by a comma. "
        "Subtract the second number from the first and output the result.",
        _subtract_numbers,
    ),
    TaskFamily(
        "multiply_numbers",
        "In this task, you are given two numbers separated by a comma. Output their product.",
        _multiply_numbers,
    ),
    TaskFamily(
        "uppercase",
        "In this task, you are given a phrase in lowercase letters. "
        "Output the same phrase written entirely in uppercase letters.",
        _uppercase,
    ),
    TaskFamily(
        "count_vowels",
        "In this task, you are given a short text. "
        "Count how many vowels (a, e, i, o, u) it contains and output the count as a number.",
        _count_vowels,
    ),
    TaskFamily(
        "first_elements",
        "In this task, you are given an integer i, a semicolon and a list of words separated by "
        "commas. Output the first i words of the list, separated by commas.",
        _first_elements,
    ),
    TaskFamily(
        "last_word",
        "In this task, you are given a sentence. Output the last word of the sentence.",
        _last_word,
    ),
    TaskFamily(
        "max_number",
        "In this task, you are given a list of numbers separated by commas. "
        "Output the largest number in the list.",
        _max_number,
    ),
    TaskFamily(
        "min_number",
        "In this task, you are given a list of numbers separated by commas. "
        "Output the smallest number in the list.",
        _min_number,
    ),
    TaskFamily(
        "even_odd",
        "In this task, you are given a whole number. "
        "Answer \"Even\" if the number is even and \"Odd\" if it is odd.",
        _even_odd,
    ),
    TaskFamily(
        "is_prime",
        "In this task, you are given a whole number. "
        "Answer \"Yes\" if the number is a prime number and \"No\" otherwise.",
        _is_prime_task,
    ),
    TaskFamily(
        "repeat_word",
        "In this task, you are given a word and a number n, separated by a comma. "
        "Output the word n times, separated by spaces.",
        _repeat_word,
    ),
    TaskFamily(
        "hyphen_join",
        "In this task, you are given words separated by spaces. "
        "Output the same words in the same order joined by hyphens, with no spaces.",
        _hyphen_join,
    ),
    TaskFamily(
        "list_length",
        "In this task, you are given a list of words separated by commas. "
        "Output the number of words in the list.",
        _list_length,
    ),
    TaskFamily(
        "sort_words",
        "In this task, you are given words separated by spaces. "
        "Sort the words in alphabetical order and output them separated by spaces.",
        _sort_words,
    ),
    TaskFamily(
        "spell_word",
        "In this task, you are given a word. Spell the word by writing its letters separated by spaces.",
        _spell_word,
    ),
    TaskFamily(
        "swap_words",
        "In this task, you are given words separated by spaces. "
        "Swap the first and the last word and output the result, separated by spaces.",
        _swap_words,
    ),
    TaskFamily(
        "first_letters",
        "In this task, you are given words separated by spaces. "
        "Output the first letter of each word, in order, separated by spaces.",
        _first_letters,
    ),
)

FAMILIES: dict[str, TaskFamily] = {f.name: f for f in _FAMILY_LIST}
FAMILY_ORDER: tuple[str, ...] = tuple(FAMILIES)  # the order used when families=None


# --- sampling -----------------------------------------------------------------------------------
def _rng(seed: int, family: str, client: int | None, split: str) -> random.Random:
    """A ``random.Random`` seeded from a stable digest (Python's ``hash()`` is salted per process)."""
    key = f"ferret-synthetic|{seed}|{family}|{'-' if client is None else client}|{split}"
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


def _draw(family: TaskFamily, rng: random.Random, n: int, taken: set[str]) -> list[Example]:
    """``n`` instances whose inputs are new to ``taken`` (updated in place).

    Rejection sampling with an attempt budget, so a family with too few distinct instances fails
    with a DataError instead of looping forever.
    """
    out: list[Example] = []
    budget = 1000 + 50 * n
    while len(out) < n:
        if budget == 0:
            raise DataError(
                f"task family {family.name!r} has too few distinct instances: got {len(out)} of {n} "
                f"new ones after {1000 + 50 * n} draws ({len(taken)} already taken)"
            )
        budget -= 1
        inp, outp = family.generate(rng)
        if inp in taken:
            continue
        taken.add(inp)
        out.append(Example(task=family.name, instruction=family.definition, input=inp, output=outp))
    return out


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be an integer >= 1, got {value!r}")


def _check_seed(seed: object) -> None:
    # A str seed would silently work (it is formatted into the key); reject it so configs stay typed.
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"seed must be an integer, got {seed!r}")


def _resolve_families(families: list[str] | None) -> list[str]:
    if families is None:
        return list(FAMILY_ORDER)
    if isinstance(families, str) or len(families) == 0:
        raise DataError(f"families must be a non-empty list of family names, got {families!r}")
    seen: set[str] = set()
    for name in families:
        if name not in FAMILIES:
            raise DataError(f"unknown task family {name!r}; known: {', '.join(FAMILY_ORDER)}")
        if name in seen:
            raise DataError(f"task family {name!r} is listed twice")
        seen.add(name)
    return list(families)


def eval_examples(family: str, eval_per_task: int, seed: int) -> list[Example]:
    """The held-out evaluation instances of one family; they depend only on (family, seed).

    Drawn sequentially, so a smaller ``eval_per_task`` gives a prefix of a larger one.
    ``build_synthetic`` uses exactly these, and keeps them out of every client's training data;
    call it directly for families held out from training (zero-shot evaluation).
    """
    _check_count("eval_per_task", eval_per_task)
    _check_seed(seed)
    if family not in FAMILIES:
        raise DataError(f"unknown task family {family!r}; known: {', '.join(FAMILY_ORDER)}")
    return _draw(FAMILIES[family], _rng(seed, family, None, "eval"), eval_per_task, set())


def build_synthetic(
    num_clients: int,
    train_per_client: int,
    eval_per_task: int,
    seed: int,
    families: list[str] | None = None,
    eval_seed: int | None = None,
) -> FederatedData:
    """Build the synthetic federated data set (see the module docstring for the partition).

    ``seed`` draws the clients' training data; ``eval_seed`` (default: ``seed``) the evaluation
    set, so a grid that varies ``seed`` but not ``eval_seed`` scores every run on the same set.

    Raises DataError for a count below 1, an unknown or repeated family name, or a family without
    enough distinct instances for the requested sizes.
    """
    _check_count("num_clients", num_clients)
    _check_count("train_per_client", train_per_client)
    _check_count("eval_per_task", eval_per_task)
    _check_seed(seed)
    eval_seed = seed if eval_seed is None else eval_seed
    _check_seed(eval_seed)
    names = _resolve_families(families)
    client_tasks = [names[i % len(names)] for i in range(num_clients)]
    eval_set: list[Example] = []
    taken: dict[str, set[str]] = {}  # per family: inputs already in eval or in a client's data
    for name in names:
        ev = eval_examples(name, eval_per_task, eval_seed)
        eval_set.extend(ev)
        taken[name] = {e.input for e in ev}

    # Clients in index order, so client i only depends on lower-index clients of its family.
    clients = [
        _draw(FAMILIES[task], _rng(seed, task, i, "train"), train_per_client, taken[task])
        for i, task in enumerate(client_tasks)
    ]
    return FederatedData(clients=clients, eval=eval_set, client_tasks=client_tasks, name="synthetic")
