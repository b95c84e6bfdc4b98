"""Tests for the embedded synthetic multi-task data set (no model, no tokenizer)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ferret.data.synthetic import FAMILIES, FAMILY_ORDER, WORDS, build_synthetic, eval_examples
from ferret.data.types import DataError, Example, FederatedData


# --- independent reference answers: recomputed from the input, not from the generator ----------
def _nums(s: str) -> list[int]:
    return [int(x) for x in s.split(",")]


def _prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, n))


def _first(s: str) -> str:
    i, rest = s.split(";")
    return ", ".join(w.strip() for w in rest.split(",")[: int(i)])


def _repeat(s: str) -> str:
    word, n = s.split(", ")
    return " ".join([word] * int(n))


REFERENCE = {
    "reverse_words": lambda s: " ".join(s.split()[::-1]),
    "sort_numbers": lambda s: ", ".join(map(str, sorted(_nums(s)))),
    "add_numbers": lambda s: str(_nums(s)[0] + _nums(s)[1]),
    "subtract_numbers": lambda s: str(_nums(s)[0] - _nums(s)[1]),
    "multiply_numbers": lambda s: str(_nums(s)[0] * _nums(s)[1]),
    "uppercase": str.upper,
    "count_vowels": lambda s: str(sum(s.count(v) for v in "aeiou")),
    "first_elements": _first,
    "last_word": lambda s: s.split()[-1],
    "max_number": lambda s: str(max(_nums(s))),
    "min_number": lambda s: str(min(_nums(s))),
    "even_odd": lambda s: ["Even", "Odd"][int(s) % 2],
    "is_prime": lambda s: "Yes" if _prime(int(s)) else "No",
    "repeat_word": _repeat,
    "hyphen_join": lambda s: s.replace(" ", "-"),
    "list_length": lambda s: str(len(s.split(","))),
    "sort_words": lambda s: " ".join(sorted(s.split())),
    "spell_word": lambda s: " ".join(s),
    "swap_words": lambda s: " ".join([s.split()[-1], *s.split()[1:-1], s.split()[0]]),
    "first_letters": lambda s: " ".join(w[0] for w in s.split()),
}


def test_at_least_14_families_with_definitions() -> None:
    assert len(FAMILIES) >= 14
    assert list(FAMILY_ORDER) == list(FAMILIES)
    for name, fam in FAMILIES.items():
        assert fam.name == name
        assert fam.definition.endswith(".") and 1 <= fam.definition.count(". ") + 1 <= 2, name
    assert len(set(WORDS)) == len(WORDS) >= 200
    assert all(w.isalpha() and w.islower() for w in WORDS)


def test_every_family_has_a_reference_check() -> None:
    # A family added without a reference answer would escape the correctness test below.
    assert set(REFERENCE) == set(FAMILIES)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_generator_matches_reference_and_is_short(name: str) -> None:
    rng = random.Random(1234)
    answer: dict[str, str] = {}
    for _ in range(300):
        inp, out = FAMILIES[name].generate(rng)
        assert out == REFERENCE[name](inp), (name, inp, out)
        # Output is a function of the input (otherwise the task is not learnable).
        assert answer.setdefault(inp, out) == out
        assert inp and out and "\n" not in inp + out
        assert len(inp.split()) < 25 and len(out.split()) <= 8 and len(out) <= 40, (inp, out)


def test_is_prime_is_balanced() -> None:
    # A heavily skewed label would let a constant answer score well.
    rng = random.Random(0)
    yes = sum(FAMILIES["is_prime"].generate(rng)[1] == "Yes" for _ in range(1000))
    assert 350 < yes < 650


def test_deterministic_and_seed_dependent() -> None:
    a = build_synthetic(6, 5, 4, seed=3)
    b = build_synthetic(6, 5, 4, seed=3)
    c = build_synthetic(6, 5, 4, seed=4)
    assert a == b
    assert a.clients != c.clients and a.eval != c.eval


def test_stable_across_processes() -> None:
    # Seeds must not come from Python's salted hash(): a fresh interpreter with another hash seed
    # must produce the same data.
    code = (
        "from ferret.data.synthetic import build_synthetic as b;"
        "d=b(4,3,2,seed=11);print(repr([[e.input for e in c] for c in d.clients]+[e.input for e in d.eval]))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": hs}, cwd=Path(__file__).resolve().parents[1],
        ).stdout
        for hs in ("1", "2")
    }
    assert len(outs) == 1
    d = build_synthetic(4, 3, 2, seed=11)
    assert outs.pop().strip() == repr([[e.input for e in c] for c in d.clients] + [e.input for e in d.eval])


def test_structure_one_task_per_client() -> None:
    F = len(FAMILY_ORDER)
    n = F + 5
    d = build_synthetic(n, 7, 5, seed=0)
    assert isinstance(d, FederatedData) and d.name == "synthetic"
    assert len(d.clients) == len(d.client_tasks) == d.num_clients == n
    for i, (task, data) in enumerate(zip(d.client_tasks, d.clients)):
        assert task == FAMILY_ORDER[i % F]
        assert len(data) == 7
        assert all(isinstance(e, Example) and e.task == task for e in data)
        assert all(e.instruction == FAMILIES[task].definition for e in data)
    # Eval: eval_per_task instances of every used family, in family order.
    assert [e.task for e in d.eval] == [f for f in FAMILY_ORDER for _ in range(5)]


def test_no_leakage_between_eval_and_clients_or_between_clients() -> None:
    F = len(FAMILY_ORDER)
    d = build_synthetic(3 * F, 20, 15, seed=5)
    for fam in FAMILY_ORDER:
        ev = [e.input for e in d.eval if e.task == fam]
        assert len(ev) == len(set(ev)) == 15
        train = [e.input for c, t in zip(d.clients, d.client_tasks) if t == fam for e in c]
        assert len(train) == 3 * 20
        assert len(set(train)) == len(train), f"duplicate training inputs in {fam}"
        assert not set(train) & set(ev), f"eval input leaked into training data of {fam}"


def test_eval_set_independent_of_num_clients() -> None:
    fourteen = list(FAMILY_ORDER[:14])
    a = build_synthetic(14, 4, 6, seed=9, families=fourteen)
    b = build_synthetic(28, 4, 6, seed=9, families=fourteen)
    assert a.eval == b.eval and len(a.eval) == 14 * 6
    # Adding clients also leaves the existing clients' data unchanged.
    assert b.clients[:14] == a.clients
    # With all families, fewer clients than families still evaluate every family (zero-shot
    # for those without a client), so the eval set is the same for any client count.
    c = build_synthetic(6, 4, 6, seed=9)
    d = build_synthetic(28, 4, 6, seed=9)
    assert c.eval == d.eval
    assert {e.task for e in c.eval} == set(FAMILY_ORDER)
    assert c.eval[: 14 * 6] == a.eval


def test_eval_covers_every_family_including_those_without_clients() -> None:
    d = build_synthetic(3, 4, 5, seed=1, families=["add_numbers", "is_prime", "spell_word", "uppercase"])
    assert d.client_tasks == ["add_numbers", "is_prime", "spell_word"]
    assert [e.task for e in d.eval] == (["add_numbers"] * 5 + ["is_prime"] * 5 + ["spell_word"] * 5
                                        + ["uppercase"] * 5)
    assert d.eval[:5] == eval_examples("add_numbers", 5, seed=1)
    assert eval_examples("add_numbers", 3, seed=1) == d.eval[:3]  # prefix-stable
    # A held-out family gets the same instances it would get in training use.
    assert eval_examples("uppercase", 5, seed=1) == build_synthetic(4, 1, 5, 1, ["uppercase"]).eval


def test_too_few_distinct_instances_raises() -> None:
    # spell_word has one instance per vocabulary word; asking for more must fail, not loop.
    with pytest.raises(DataError, match="spell_word") as err:
        build_synthetic(1, len(WORDS) + 1, 1, seed=0, families=["spell_word"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"num_clients": 0}, "0"),
        ({"num_clients": -3}, "-3"),
        ({"train_per_client": 0}, "0"),
        ({"eval_per_task": 0}, "0"),
        ({"eval_per_task": 2.5}, "2.5"),
        ({"families": ["add_numbers", "no_such_task"]}, "no_such_task"),
        ({"families": ["add_numbers", "add_numbers"]}, "add_numbers"),
        ({"families": []}, "[]"),
        ({"seed": "7"}, "'7'"),
    ],
)
def test_bad_arguments_raise_one_line_data_error(kwargs: dict, bad: str) -> None:
    args = {"num_clients": 2, "train_per_client": 2, "eval_per_task": 2, "seed": 0} | kwargs
    with pytest.raises(DataError) as err:
        build_synthetic(**args)
    msg = str(err.value)
    assert bad in msg and "\n" not in msg
    assert isinstance(err.value, ValueError)
    name = next(iter(kwargs))
    if name != "families":
        assert name in msg
