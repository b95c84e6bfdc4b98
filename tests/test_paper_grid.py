"""The paper grid (workflow/configs/paper.yaml) is the paper's setup, and the keys it needs work.

- Recount: the dry run's train jobs are, per table, exactly the paper's cells (from
  results/reference/table{2,3,9}_rouge_l.csv) x their seeds, plus Fig. 3's K ablation; the same
  count follows from the YAML alone.
- Resolved run configs, value by value, against the paper's setup
  (../shared/reference/ferret_paper_numbers.md, "The experimental setup").
- ``local_epochs``: whole passes over a client's data; bad values fail in one line.
- ``codealpaca_split=language``: nine clients, one per programming language, on the real sample.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_overrides
from test_paper_workflow import _expected_points, _job_count, _train_commands, precision_label

import ferret.federation as federation
from ferret.batches import client_batches
from ferret.config import ConfigError, load_config
from ferret.data.codealpaca import CLIENT_LANGUAGES, DROPPED, HOLDOUT, language, load_codealpaca
from ferret.data.types import DataError
from ferret.engine import run

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "workflow/configs/paper.yaml"
REFERENCE = ROOT / "results/reference"
TABLES = {"Table 2": "table2_rouge_l.csv", "Table 3": "table3_rouge_l.csv", "Table 9": "table9_rouge_l.csv"}


@pytest.fixture(scope="module")
def runs() -> tuple[dict[str, dict[str, str]], int]:
    """run id -> its `ferret run` arguments, and the dry run's train-job count."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--cores", "1",
                           "--configfile", str(PAPER)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _train_commands(proc.stdout), _job_count(proc.stdout, "train")


def _cells(name: str) -> dict[tuple[str, str, str], int]:
    with open(REFERENCE / name, newline="") as fh:
        return {(r["dataset"], r["model"], r["method"]): int(r["n_seeds"]) for r in csv.DictReader(fh)}


def _resolved(args: dict[str, str]):
    return load_config(None, [f"{k}={v}" for k, v in args.items()])


def test_jobs_per_table_are_the_papers_cells_times_their_seeds(runs):
    by_id, n_train = runs
    cfg = yaml.safe_load(PAPER.read_text())
    ablation = cfg["ablations"]["K"]
    main_k = cfg["K"][0]
    # Fig. 3: K0, 2K0, 4K0, 8K0 with 2K0 the main grid's (Table 4's) K
    k0 = ablation["values"][0]
    assert ablation["values"] == [k0, 2 * k0, 4 * k0, 8 * k0] and 2 * k0 == main_k
    table_runs, fig3, precision = {}, set(), set()
    for rid, a in by_id.items():
        cell = (a["dataset"], a["model"], a["method"])
        if precision_label(rid):  # the precision ablation (tests/test_paper_workflow.py)
            precision.add(rid)
            continue
        if a["method"] == "ferret" and int(a["K"]) != main_k:
            fig3.add((cell, int(a["K"]), int(a["seed"])))
            continue
        table_runs.setdefault(cell, set()).add(int(a["seed"]))
    counts = {}
    for table, name in TABLES.items():
        cells = _cells(name)
        for cell, n_seeds in cells.items():
            assert table_runs.pop(cell) == set(range(n_seeds)), (table, cell)
        counts[table] = sum(cells.values())
    assert table_runs == {}, f"runs for no paper cell: {sorted(table_runs)}"
    assert counts == {"Table 2": 128, "Table 3": 80, "Table 9": 64}  # 32, 20 and 16 cells x 4 seeds
    first = (cfg["datasets"][0], cfg["models"][0], "ferret")
    assert fig3 == {(first, k, s) for k in ablation["values"] if k != main_k for s in ablation["seeds"]}
    assert len(precision) == 32  # Ferret and FedKSeed x 2 models x 4 seeds x {bfloat16, mixed-float16}
    assert n_train == len(by_id) == sum(counts.values()) + len(fig3) + len(precision) == 307
    # the same count from the YAML alone
    assert len(_expected_points(cfg)) == n_train


def test_resolved_run_configs_are_the_papers_setup(runs):
    by_id, _ = runs
    cfg = {rid: _resolved(a) for rid, a in by_id.items()}
    for rid, c in cfg.items():
        assert c.batch_size == 1 and c.device == "cuda", rid
        if c.dataset in ("natural-instructions", "dolly"):
            assert c.participation == 0.05, rid
        if c.method in ("fedavg", "fedit", "fedit-sgd", "fedptuning", "fedprompt"):
            assert c.local_epochs == 1 and c.n_accum == 1, rid  # one local epoch
        if c.method in ("fedzo", "fedkseed"):
            assert c.local_epochs == 0 and c.local_steps == 200 and c.method_options[c.method]["lr"] == 3e-7, rid
        if c.method == "fedkseed":
            assert c.K == 4096, rid
        if c.method == "ferret":
            assert (c.local_steps, c.n_accum, c.local_epochs) == (40, 4, 0), rid  # T = 10 x 4 samples
            assert c.method_options["ferret"]["scaling"] == "official", rid  # the code's d/n, not 1/(rho K)
        if c.dataset in ("codealpaca", "gsm8k"):
            assert c.rounds == 20, rid
        assert c.num_clients == {"natural-instructions": 738, "dolly": 200, "codealpaca": 9, "gsm8k": 3}[c.dataset]
    assert cfg["fedzo_llama-3b_natural-instructions_N738_K200_s0"].method_options["fedzo"]["n_perturb"] == 1
    for model in ("datajuicer-1.3b", "llama-3b"):
        ni = cfg[f"ferret_{model}_natural-instructions_N738_K200_s3"]
        assert (ni.rounds, ni.lr, ni.slr) == (12, 1e-4, 10.0)
        dolly = cfg[f"ferret_{model}_dolly_N200_K200_s0"]
        assert (dolly.rounds, dolly.lr, dolly.slr, dolly.dirichlet_alpha) == (20, 1e-4, 3.0, 0.5)
        kseed = cfg[f"fedkseed_{model}_natural-instructions_N738_K4096_s1"]
        assert (kseed.K, kseed.local_steps, kseed.rounds) == (4096, 200, 40)
        assert cfg[f"fedkseed_{model}_dolly_N200_K4096_s2"].rounds == 60
        assert cfg[f"fedavg_{model}_dolly_N200_K200_s0"].rounds == 60
    for model, lr, slr in (("llama2-7b", 3e-4, 5.0), ("llama2-13b", 5e-4, 10.0)):
        for data in ("codealpaca_N9", "gsm8k_N3"):
            f = cfg[f"ferret_{model}_{data}_K200_s0"]
            assert (f.lr, f.slr) == (lr, slr)
            assert cfg[f"fedavg_{model}_{data}_K200_s0"].lr == 3e-4
    gsm = cfg["fedavg_llama2-7b_gsm8k_N3_K200_s0"]
    assert (gsm.num_clients, gsm.rounds) == (3, 20)
    code = cfg["ferret_llama2-13b_codealpaca_N9_K200_s2"]
    assert (code.num_clients, code.codealpaca_split) == (9, "language")


def _items(n: int) -> list[dict[str, list[int]]]:
    return [{"input_ids": [i + 1, i + 2], "labels": [i + 1, i + 2]} for i in range(n)]


@pytest.mark.parametrize("epochs", [1, 2])
def test_local_epochs_walk_the_clients_data_whole(epochs):
    cfg = load_config(None, ["local_steps=3", f"local_epochs={epochs}", "batch_size=2"])
    batches = client_batches(_items(5), cfg, 1, 0, pad_id=0, device=torch.device("cpu"))
    assert len(batches) == -(-5 * epochs // 2)  # ceil: the last micro-batch is smaller, local_steps ignored
    seen = sorted(int(x) for b in batches for x in b["input_ids"][:, 0])
    assert seen == sorted(list(range(1, 6)) * epochs)


def test_local_epochs_zero_keeps_local_steps():
    cfg = load_config(None, ["local_steps=3", "batch_size=2"])
    assert cfg.local_epochs == 0
    assert len(client_batches(_items(5), cfg, 1, 0, pad_id=0, device=torch.device("cpu"))) == 3


@pytest.mark.parametrize("override, names", [(["local_epochs=-1"], "local_epochs=-1"),
                                             (["local_epochs=1", "n_accum=2", "local_steps=4"], "n_accum=2")])
def test_bad_local_epochs_fail_in_one_line(override, names):
    with pytest.raises(ConfigError, match=names) as e:
        load_config(None, override)
    assert "\n" not in str(e.value)


@pytest.fixture
def codealpaca_with_pascal(tmp_path, data) -> Path:
    """The data with one more Pascal and x86-64 record (the real sample has none), so all nine
    clients exist."""
    records = json.loads((data / "codealpaca/codealpaca.json").read_text())
    records += [{"instruction": "Write a Pascal program that prints the sum of two integers.", "input": "",
                 "output": "program Sum; begin writeln(2 + 3) end."},
                {"instruction": "Write x86-64 assembly that returns 42.", "input": "", "output": "mov eax, 42\nret"}]
    path = tmp_path / "codealpaca.json"
    path.write_text(json.dumps(records))
    return path


def test_codealpaca_language_split_is_nine_language_clients(codealpaca_with_pascal):
    records = json.loads(codealpaca_with_pascal.read_text())
    kept = [r for r in records if language(r) in CLIENT_LANGUAGES]
    assert any(language(r) == DROPPED for r in records)
    a = load_codealpaca(str(codealpaca_with_pascal), 9, seed=0, split="language")
    b = load_codealpaca(str(codealpaca_with_pascal), 9, seed=1, split="language")
    assert a.client_tasks == CLIENT_LANGUAGES and DROPPED not in a.client_tasks
    assert len(a.eval) == int(len(kept) * HOLDOUT)
    assert sum(len(c) for c in a.clients) + len(a.eval) == len(kept)
    for lang, client in zip(a.client_tasks, a.clients):
        assert client and all(language({"instruction": e.instruction, "input": e.input}) == lang for e in client)
    # a language split does not depend on the seed (only the IID split does)
    assert [[e.output for e in c] for c in a.clients] == [[e.output for e in c] for c in b.clients]


def test_codealpaca_language_split_needs_nine_clients_and_every_language(codealpaca_with_pascal, tmp_path):
    with pytest.raises(ConfigError, match="num_clients=8") as e:
        load_config(None, ["dataset=codealpaca", f"data_path={codealpaca_with_pascal}",
                           "codealpaca_split=language", "num_clients=8", "participation=0.5"])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="codealpaca_split='bylang'"):
        load_config(None, ["dataset=codealpaca", f"data_path={codealpaca_with_pascal}", "codealpaca_split=bylang"])
    records = json.loads(codealpaca_with_pascal.read_text())
    sample = tmp_path / "no_pascal.json"
    sample.write_text(json.dumps([r for r in records if language(r) != "pascal"]))
    with pytest.raises(DataError, match="pascal"):
        load_codealpaca(str(sample), 9, seed=0, split="language")


@pytest.mark.parametrize("override, named", [
    ({"when": {"method": "ferret"}, "settings": {"num_clients": 5}}, "num_clients"),  # a grid axis
    ({"when": {"dataset": "dolly"}, "settings": {"slr": -3}}, "slr=-3"),  # ferret's own check
    ({"when": {"method": "ferret"}, "setings": {"rounds": 2}}, "setings"),  # a typo
])
def test_bad_override_fails_before_any_job(tmp_path, override, named):
    cfg = yaml.safe_load(PAPER.read_text())
    cfg["overrides"] = [*cfg["overrides"], override]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert named in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout + proc.stderr


def test_a_run_with_local_epochs_trains_each_sampled_client_one_pass(tmp_path, monkeypatch):
    """Through the engine: every sampled client's round is ceil(its examples / batch_size) micro-batches."""
    seen: list[tuple[int, int]] = []
    real = federation.client_batches

    def spy(data, cfg, *args, **kwargs):
        out = real(data, cfg, *args, **kwargs)
        seen.append((len(data), len(out)))
        return out

    monkeypatch.setattr(federation, "client_batches", spy)
    cfg = load_config(None, tiny_overrides(method="fedavg", rounds=2, local_epochs=1, local_steps=1, batch_size=3))
    assert run(cfg, tmp_path)["status"] == "ok"
    assert seen and all(n_batches == -(-n // 3) and n_batches > 1 for n, n_batches in seen)
