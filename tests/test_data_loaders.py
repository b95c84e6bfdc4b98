"""Loaders of the paper's data sets, on small files in their real formats (tests/real_formats.py)
and, where present, on the larger real samples in ../shared/data (or $FERRET_SHARED/data): every
test taking ``data`` runs on both (conftest.py; the real samples' run skips with the reason when
they are absent, and fails when FERRET_REQUIRE_SHARED=1, as in CI). Malformed and missing inputs
are built in tmp_path from those files.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from ferret.config import ConfigError, load_config
from ferret.data import natural_instructions as ni
from ferret.data.codealpaca import load_codealpaca
from ferret.data.dolly import load_dolly
from ferret.data.gsm8k import accuracy, final_number, load_gsm8k
from ferret.data.prompts import format_prompt
from ferret.data.registry import load_federated_data
from ferret.data.types import DataError, Example


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# -- Natural Instructions -------------------------------------------------------------------------

def _split(root: Path, part: str) -> list[str]:
    return [t.strip() for t in (root / "splits/default" / f"{part}_tasks.txt").read_text().splitlines() if t.strip()]


def _task(root: Path, name: str) -> dict:
    return json.loads((root / "tasks" / f"{name}.json").read_text())


def _qualifying_train_tasks(root: Path) -> list[str]:
    """Training tasks present with at least 20 instances (the official minimum)."""
    present = {p.stem for p in (root / "tasks").glob("*.json")}
    return [t for t in _split(root, "train") if t in present and len(_task(root, t)["Instances"]) >= 20]


def test_ni_one_client_per_training_task_present_in_split_order(data):
    root = data / "natural-instructions"
    present = {p.stem for p in (root / "tasks").glob("*.json")}
    train = _qualifying_train_tasks(root)
    test = [t for t in _split(root, "test") if t in present]
    assert len(train) >= 2 and len(test) >= 1  # the sample holds both kinds
    assert len(present) < len(_split(root, "train")) + len(_split(root, "test"))  # some listed are absent
    fd = ni.load_natural_instructions(root, num_clients=len(train), seed=0)
    assert fd.client_tasks == train
    for task, client in zip(fd.client_tasks, fd.clients):
        raw = _task(root, task)
        kept = [i for i in raw["Instances"] if len(i["input"]) < 1024]
        assert len(client) == int(0.2 * len(kept))  # the official 20 % sample
        pairs = {(i["input"], i["output"][0]) for i in kept}
        assert all(ex.task == task and ex.instruction == raw["Definition"][0] for ex in client)
        assert all((ex.input, ex.output) in pairs for ex in client)
        assert len({ex.input for ex in client}) == len(client)  # without replacement


def test_ni_evaluates_only_test_tasks_with_the_official_sample_size(data):
    root = data / "natural-instructions"
    present = {p.stem for p in (root / "tasks").glob("*.json")}
    test = [t for t in _split(root, "test") if t in present]
    fd = ni.load_natural_instructions(root, num_clients=1, seed=0)
    per_task = Counter(ex.task for ex in fd.eval)
    assert list(per_task) == test
    assert not set(per_task) & set(fd.client_tasks)
    for task in test:
        n = len([i for i in _task(root, task)["Instances"] if len(i["input"]) < 1024])
        assert per_task[task] == (max(20, int(0.02 * n)) if n > 20 else n)


def test_ni_sampling_is_seeded_and_eval_is_the_same_for_every_seed(data):
    root = data / "natural-instructions"
    n = len(_qualifying_train_tasks(root))
    a, b, c = (ni.load_natural_instructions(root, n, seed=s) for s in (0, 0, 1))
    assert a.clients == b.clients and a.eval == b.eval
    assert a.clients != c.clients
    assert a.eval == c.eval


def _mini_clone(tmp_path: Path, data: Path, train: dict[str, int], test: dict[str, int]) -> Path:
    """A clone holding real tasks truncated to the given instance counts."""
    src = data / "natural-instructions"
    root = tmp_path / "ni"
    (root / "tasks").mkdir(parents=True)
    (root / "splits/default").mkdir(parents=True)
    for name, n in {**train, **test}.items():
        task = _task(src, name)
        task["Instances"] = task["Instances"][:n]
        (root / "tasks" / f"{name}.json").write_text(json.dumps(task))
    (root / "splits/default/train_tasks.txt").write_text("\n".join(train) + "\n")
    (root / "splits/default/test_tasks.txt").write_text("\n".join(test) + "\n")
    return root


def test_ni_minimum_size_rule_and_length_filter(tmp_path, data):
    root = _mini_clone(tmp_path, data, {"task063_first_i_elements": 19, "task085_unnatural_addsub_arithmetic": 20,
                                        "task092_check_prime_classification": 40},
                       {"task1159_bard_analogical_reasoning_containers": 30})  # short inputs, like task092's
    fd = ni.load_natural_instructions(root, 2, seed=0)
    assert fd.client_tasks == ["task085_unnatural_addsub_arithmetic", "task092_check_prime_classification"]
    assert [len(c) for c in fd.clients] == [4, 8]
    # The length filter counts the input's characters: a limit that keeps fewer than 20 of
    # task085's 20 inputs drops it, while task092's short inputs all pass.
    lengths = sorted(len(i["input"]) for i in _task(root, "task085_unnatural_addsub_arithmetic")["Instances"])
    assert max(len(i["input"]) for i in _task(root, "task092_check_prime_classification")["Instances"]) < lengths[-1]
    fd = ni.load_natural_instructions(root, 1, seed=0, max_length=lengths[-1])
    assert fd.client_tasks == ["task092_check_prime_classification"]
    with pytest.raises(DataError, match="no training task"):
        ni.load_natural_instructions(root, 1, seed=0, max_length=1)


def test_ni_num_clients_too_large_names_the_count(tmp_path, data):
    root = data / "natural-instructions"
    n = len(_qualifying_train_tasks(root))
    with pytest.raises(DataError, match=f"num_clients=50 but only {n} training tasks") as e:
        ni.load_natural_instructions(root, 50, seed=0)
    _one_line(e)
    assert ni.load_natural_instructions(root, 3, seed=0).num_clients == 3


def test_ni_errors(tmp_path, data):
    with pytest.raises(DataError, match="data path not found: .*nowhere") as e:
        ni.load_natural_instructions(tmp_path / "nowhere", 1, 0)
    _one_line(e)
    root = _mini_clone(tmp_path, data, {"task085_unnatural_addsub_arithmetic": 30},
                       {"task827_copa_commonsense_reasoning": 30})
    bad = root / "tasks/task085_unnatural_addsub_arithmetic.json"
    good = bad.read_text()
    task = json.loads(good)
    del task["Instances"][4]["output"]
    bad.write_text(json.dumps(task))
    with pytest.raises(DataError, match=r"task085_unnatural_addsub_arithmetic.json instance 4") as e:
        ni.load_natural_instructions(root, 1, 0)
    _one_line(e)
    bad.write_text(good[:200])
    with pytest.raises(DataError, match=r"cannot read .*task085_unnatural_addsub_arithmetic.json") as e:
        ni.load_natural_instructions(root, 1, 0)
    _one_line(e)
    bad.write_text(good)
    (root / "splits/default/test_tasks.txt").write_text("\n")
    with pytest.raises(DataError, match="test_tasks.txt lists no tasks") as e:
        ni.load_natural_instructions(root, 1, 0)
    _one_line(e)
    (root / "splits/default/test_tasks.txt").write_text("task_missing_everywhere\n")
    with pytest.raises(DataError, match="no test task"):
        ni.load_natural_instructions(root, 1, 0)


# -- GSM8K ----------------------------------------------------------------------------------------

def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_gsm8k_gold_answers_score_100_and_shuffled_near_0(data):
    answers = [r["answer"] for r in _jsonl(data / "gsm8k/test.jsonl")]
    assert len(answers) > 1000
    assert accuracy(answers, answers) == 1.0
    shuffled = answers[:]
    random.Random(0).shuffle(shuffled)
    assert accuracy(shuffled, answers) < 0.05


def test_gsm8k_final_number_rules():
    assert final_number("so 3 + 4 = 7 apples\n#### 1,000") == 1000
    assert final_number("#### 12.50") == final_number("12.5") == final_number("answer 7 then 12.50.")
    assert final_number("The answer is 42.") == 42  # no ####: the last number
    assert final_number("#### -3") == -3
    assert final_number("no number here") is None
    assert accuracy(["#### 5", "it is 6", "####"], ["x #### 5", "#### 7", "#### 0"]) == pytest.approx(1 / 3)


def test_gsm8k_loader_clients_eval_and_metric(data):
    fd = load_gsm8k(str(data / "gsm8k"), num_clients=10, seed=0)
    train, test = _jsonl(data / "gsm8k/train.jsonl"), _jsonl(data / "gsm8k/test.jsonl")
    assert fd.num_clients == 10 and sum(map(len, fd.clients)) == len(train)
    assert [ex.output for ex in fd.eval] == [r["answer"] for r in test]
    assert {ex.input for c in fd.clients for ex in c} == {""}
    assert set(fd.metrics) == {"accuracy"}
    assert fd.metrics["accuracy"]([ex.output for ex in fd.eval], [ex.output for ex in fd.eval]) == 1.0


def test_gsm8k_errors(tmp_path, data):
    with pytest.raises(DataError, match="data path not found") as e:
        load_gsm8k(str(tmp_path / "none"), 2, 0)
    _one_line(e)
    root = tmp_path / "g"
    root.mkdir()
    lines = (data / "gsm8k/train.jsonl").read_text().splitlines()[:20]
    shutil.copy(data / "gsm8k/test.jsonl", root / "test.jsonl")
    (root / "train.jsonl").write_text("\n".join(lines[:2] + ["{not json"] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl line 3: malformed JSON") as e:
        load_gsm8k(str(root), 2, 0)
    _one_line(e)
    rec = json.loads(lines[5])
    del rec["answer"]
    (root / "train.jsonl").write_text("\n".join(lines[:5] + [json.dumps(rec)] + lines[6:]) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl line 6: missing field 'answer'") as e:
        load_gsm8k(str(root), 2, 0)
    _one_line(e)
    (root / "train.jsonl").write_text("\n")
    with pytest.raises(DataError, match="train.jsonl holds no records") as e:
        load_gsm8k(str(root), 2, 0)
    _one_line(e)


# -- CodeAlpaca -----------------------------------------------------------------------------------

def test_codealpaca_holds_out_a_fixed_tenth_and_loses_nothing(data):
    path = data / "codealpaca/codealpaca.json"
    records = json.loads(path.read_text())
    a = load_codealpaca(str(path), num_clients=20, seed=0)
    b = load_codealpaca(str(path), num_clients=20, seed=1)
    assert len(a.eval) == int(0.1 * len(records))
    assert a.eval == b.eval  # the held-out tenth does not depend on the seed
    train = [ex for c in a.clients for ex in c]
    assert len(train) + len(a.eval) == len(records)

    def key(ex):
        return ex.instruction, ex.input, ex.output

    assert Counter(map(key, train + a.eval)) == Counter((r["instruction"], r["input"], r["output"]) for r in records)
    assert a.clients != b.clients


def test_codealpaca_errors(tmp_path, data):
    records = json.loads((data / "codealpaca/codealpaca.json").read_text())[:30]
    bad = [dict(r) for r in records]
    del bad[2]["output"]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"c.json record 2: missing field 'output'") as e:
        load_codealpaca(str(path), 2, 0)
    _one_line(e)
    path.write_text("[]")
    with pytest.raises(DataError, match="c.json holds no records"):
        load_codealpaca(str(path), 2, 0)
    path.write_text('{"instruction": "x"}')
    with pytest.raises(DataError, match="JSON list"):
        load_codealpaca(str(path), 2, 0)
    with pytest.raises(DataError, match="data path not found: ./missing.json"):
        load_codealpaca("./missing.json", 2, 0)


# -- Dolly-15K (no real sample anywhere: a small file in its format) -------------------------------

CATEGORIES = ["brainstorming", "classification", "closed_qa", "creative_writing", "general_qa",
              "information_extraction", "open_qa", "summarization"]


def _dolly_file(tmp_path: Path, n: int = 800) -> Path:
    r = random.Random(0)
    path = tmp_path / "databricks-dolly-15k.jsonl"
    rows = [{"instruction": f"question {i}", "context": "" if i % 3 else f"context {i}",
             "response": f"answer {i}", "category": r.choice(CATEGORIES)} for i in range(n)]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def test_dolly_holds_out_one_category_and_splits_the_rest(tmp_path):
    path = _dolly_file(tmp_path)
    rows = _jsonl(path)
    fd = load_dolly(str(path), num_clients=20, seed=0)
    assert fd.num_clients == 20
    assert {ex.task for ex in fd.eval} == {"summarization"}
    assert len(fd.eval) == sum(r["category"] == "summarization" for r in rows)
    train = [ex for c in fd.clients for ex in c]
    assert "summarization" not in {ex.task for ex in train}
    assert len(train) + len(fd.eval) == len(rows)
    assert min(len(c) for c in fd.clients) >= 10
    assert all(ex.template == "dolly" for ex in train + fd.eval)
    assert "Write a response for the task request." in format_prompt(fd.eval[0])
    with_context = next(ex for ex in train if ex.input)
    assert f"### Input:\n{with_context.input}" in format_prompt(with_context)
    iid = load_dolly(str(path), num_clients=20, seed=0, alpha=0.0, eval_category="open_qa")
    n_iid = len(rows) - sum(r["category"] == "open_qa" for r in rows)
    assert [len(c) for c in iid.clients][:-1] == [n_iid // 20] * 19
    assert {ex.task for ex in iid.eval} == {"open_qa"}


def test_dolly_errors(tmp_path):
    path = _dolly_file(tmp_path)
    with pytest.raises(DataError, match="eval_category 'poetry' is not a category .*summarization") as e:
        load_dolly(str(path), 20, 0, eval_category="poetry")
    _one_line(e)
    with pytest.raises(DataError, match="data path not found"):
        load_dolly(str(tmp_path / "dolly.jsonl"), 20, 0)
    # A hub id without the `datasets` package or the network fails in one line, naming the id.
    with pytest.raises(DataError, match="databricks/databricks-dolly-15k") as e:
        load_dolly("databricks/databricks-dolly-15k", 20, 0)
    _one_line(e)


# -- registry and config --------------------------------------------------------------------------

def test_real_data_sets_need_a_data_path_but_not_its_files():
    with pytest.raises(ConfigError, match="dataset=gsm8k needs data_path"):
        load_config(None, ["dataset=gsm8k"])
    # Validation never reads the path, so a grid is checked on a machine without the data.
    cfg = load_config(None, ["dataset=dolly", "data_path=/no/such/dolly.jsonl", "num_clients=200"])
    assert cfg.data_path == "/no/such/dolly.jsonl"
    with pytest.raises(ConfigError, match="eval_limit=-1"):
        load_config(None, ["dataset=codealpaca", "data_path=x.json", "eval_limit=-1"])


def test_registry_limits_eval_to_a_fixed_sample(data):
    cfg = SimpleNamespace(dataset="gsm8k", data_path=str(data / "gsm8k"), num_clients=4, seed=0, eval_limit=50)
    a = load_federated_data(cfg)
    b = load_federated_data(SimpleNamespace(**{**vars(cfg), "seed": 3}))
    assert len(a.eval) == 50 and a.eval == b.eval
    test = [r["answer"] for r in _jsonl(data / "gsm8k/test.jsonl")]
    positions = [test.index(ex.output) for ex in a.eval]
    assert positions == sorted(positions)  # original order kept


def test_unknown_template_is_a_one_line_error():
    with pytest.raises(DataError, match="unknown prompt template 'chatml'"):
        format_prompt(Example(task="t", instruction="i", input="", output="o", template="chatml"))
