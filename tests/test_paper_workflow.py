"""The paper grid (workflow/configs/paper.yaml) without data or models, and the NI sample end to end.

- The dry run lists every job of the grid; the count is recomputed here from the YAML alone.
- Each run's `ferret run` arguments carry its data set's path, its model's dtype, its method's
  official hyper-parameters, and its model's GPU count.
- Ferret and FedAvg run 3 rounds on the real Natural Instructions sample with the tiny model:
  one client per training task present, evaluation on the test tasks only.
- A GSM8K run logs the exact-match `accuracy` column.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml
from conftest import with_overrides

from ferret.algorithms import registry
from ferret.config import load_config
from ferret.engine import run
from ferret.models import ALIASES, ModelError, check_model_name, load_model_and_tokenizer

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "workflow/configs/paper.yaml"
AXES = ("methods", "models", "datasets", "num_clients", "K", "seeds", "precisions")
# precision label -> (dtype, precision), as workflow/rules/common.smk sets them
PRECISION_LABELS = {"float32": ("float32", "pure"), "float16": ("float16", "pure"), "bfloat16": ("bfloat16", "pure"),
                    "mixed-float16": ("float16", "mixed"), "mixed-bfloat16": ("bfloat16", "mixed")}


def precision_label(rid: str) -> str | None:
    """The precision label a run id ends in, None for an unlabelled run."""
    last = rid.rsplit("_", 1)[-1]
    return last if last in PRECISION_LABELS else None


def _expected_points(cfg: dict) -> set[tuple]:
    """Grid points from the YAML alone: main grid, each extra grid, each ablation."""
    main = {a: cfg.get(a, [None]) for a in AXES}
    points = set(itertools.product(*(main[a] for a in AXES)))
    for extra in cfg.get("grids", []):
        points |= set(itertools.product(*(extra.get(a, main[a]) for a in AXES)))
    for axis, abl in cfg.get("ablations", {}).items():
        for value, seed in itertools.product(abl["values"], abl.get("seeds", cfg["seeds"])):
            p = {a: main[a][0] for a in AXES}
            p.update(methods=abl["method"], seeds=seed, **{axis: value})
            points.add(tuple(p[a] for a in AXES))
    return points


@pytest.fixture(scope="module")
def dry_run() -> str:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--cores", "1",
                           "--configfile", str(PAPER)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _train_commands(stdout: str) -> dict[str, dict]:
    """run id -> its full run config, read from the file its printed `ferret run --config` names
    (the command holds no key=value word)."""
    runs = {}
    for line in stdout.splitlines():
        m = re.search(r"-m ferret run --config (\S+) --out results/runs/paper/(\S+) >", line)
        if m:
            assert "=" not in line.split(" >")[0], line
            runs[m.group(2)] = yaml.safe_load((ROOT / m.group(1)).read_text())
    return runs


def _job_count(stdout: str, rule: str) -> int:
    m = re.search(rf"^{rule}\s+(\d+)$", stdout, re.MULTILINE)
    assert m, f"no job count for rule {rule}"
    return int(m.group(1))


def test_dry_run_lists_the_full_paper_grid(dry_run):
    cfg = yaml.safe_load(PAPER.read_text())
    expected = _expected_points(cfg)
    runs = _train_commands(dry_run)
    assert _job_count(dry_run, "train") == len(expected) == len(runs)
    got = {(a["method"], a["model"], a["dataset"], a["num_clients"], a["K"], a["seed"], precision_label(rid))
           for rid, a in runs.items()}
    assert got == expected
    # the paper's eight methods: FedKSeed-Pro has no row in its tables
    assert {p[0] for p in got} == set(registry.METHODS) - {"fedkseed-pro"}
    assert {p[1] for p in got} == {"datajuicer-1.3b", "llama-3b", "llama2-7b", "llama2-13b",
                                   "llama3-8b", "qwen2.5-7b"}
    assert {p[2] for p in got} == {"natural-instructions", "dolly", "codealpaca", "gsm8k"}
    k_ablation = {p[4] for p in got
                  if p[0] == "ferret" and p[1] == "datajuicer-1.3b" and p[2] == "natural-instructions"}
    assert k_ablation == set(cfg["ablations"]["K"]["values"])


def test_each_run_gets_its_data_model_and_method_settings(dry_run):
    cfg = yaml.safe_load(PAPER.read_text())
    runs = _train_commands(dry_run)
    for rid, args in runs.items():
        data = cfg["dataset_settings"][args["dataset"]]
        model = cfg["model_settings"][args["model"]]
        method = cfg.get("method_settings", {}).get(args["method"], {})
        assert args["data_path"] == data["data_path"], rid
        label = precision_label(rid)
        dtype, precision = (PRECISION_LABELS[label] if label
                            else (model["settings"]["dtype"], model["settings"]["precision"]))
        assert (args["dtype"], args["precision"]) == (dtype, precision), rid
        assert args["device"] == "cuda" and args["run_id"] == rid
        # precedence: settings < data set < model < method < matching overrides
        expected_rounds = method.get("rounds", data.get("rounds", cfg["settings"].get("rounds")))
        for o in cfg.get("overrides", []):
            if all(args[axis] == value for axis, value in o["when"].items()):
                expected_rounds = o["settings"].get("rounds", expected_rounds)
        assert args["rounds"] == expected_rounds, rid
        assert args["method_options"]["ferret"]["basis"] == "trunc_normal"  # the official basis, not default.yaml's
    ferret = runs["ferret_datajuicer-1.3b_natural-instructions_N738_K200_s0"]
    assert (ferret["rounds"], ferret["local_steps"], ferret["n_accum"], ferret["lr"], ferret["slr"]) == \
        (12, 40, 4, 0.0001, 10.0)  # scripts/ferret.sh
    kseed = runs["fedkseed_llama2-13b_gsm8k_N3_K4096_s0"]
    assert (kseed["local_steps"], kseed["max_new_tokens"], kseed["method_options"]["fedkseed"]["lr"]) == \
        (200, 256, 3e-07)
    dolly = runs["fedavg_llama-3b_dolly_N200_K200_s1"]
    assert (dolly["rounds"], dolly["dirichlet_alpha"], dolly["eval_category"]) == (60, 0.5, "summarization")


def test_every_run_is_official_float16_but_the_precision_ablation(dry_run):
    """The official precision (pure float16) everywhere; Ferret and FedKSeed on Table 2's NI cells
    also in pure bfloat16 and mixed float16, every seed, the same runs otherwise."""
    cfg = yaml.safe_load(PAPER.read_text())
    runs = _train_commands(dry_run)
    by_precision: dict[tuple[str, str], set[tuple]] = {}
    for _rid, a in runs.items():
        resolved = load_config(None, [f"{k}={v}" for k, v in a.items()])
        key = (resolved.method, resolved.model, resolved.dataset, resolved.K, resolved.seed)
        by_precision.setdefault((resolved.dtype, resolved.precision), set()).add(key)
    assert set(by_precision) == {("float16", "pure"), ("bfloat16", "pure"), ("float16", "mixed")}
    ablation = {(m, model, "natural-instructions", k, s) for m, k in (("ferret", 200), ("fedkseed", 4096))
                for model in cfg["models"] for s in cfg["seeds"]}
    assert by_precision["bfloat16", "pure"] == by_precision["float16", "mixed"] == ablation
    assert ablation < by_precision["float16", "pure"]  # the official run of each ablation point
    assert len(ablation) == 16 and len(runs) == len(by_precision["float16", "pure"]) + 32


def test_resolved_runs_carry_the_papers_setup(dry_run):
    """App. C.1 values, written out here rather than read back from the YAML."""
    runs = _train_commands(dry_run)
    ferret = runs["ferret_llama-3b_dolly_N200_K200_s3"]
    assert (ferret["rounds"], ferret["slr"], ferret["lr"], ferret["participation"]) == (20, 3.0, 0.0001, 0.05)
    kseed = runs["fedkseed_datajuicer-1.3b_natural-instructions_N738_K4096_s0"]
    assert (kseed["K"], kseed["local_steps"], kseed["rounds"]) == (4096, 200, 40)
    gsm8k = [a for a in runs.values() if a["dataset"] == "gsm8k"]
    assert gsm8k and {a["num_clients"] for a in gsm8k} == {3} and {a["rounds"] for a in gsm8k} == {20}
    assert {a["num_clients"] for a in runs.values() if a["dataset"] == "codealpaca"} == {9}
    big = runs["ferret_llama2-13b_codealpaca_N9_K200_s0"]
    assert (big["lr"], big["slr"]) == (0.0005, 10.0)
    fedavg = runs["fedavg_llama2-7b_gsm8k_N3_K200_s1"]
    assert (fedavg["lr"], fedavg["slr"]) == (0.0003, 1.0)
    assert {a["seed"] for a in runs.values() if a["method"] == "fedzo"} == {0, 1, 2, 3}


def test_runs_ask_for_their_models_gpus(dry_run):
    cfg = yaml.safe_load(PAPER.read_text())
    blocks = re.findall(r"wildcards: run_id=(\S+)\n(?:\s+priority: \d+\n)?\s+resources: ([^\n]*)", dry_run)
    assert len(blocks) == len(_train_commands(dry_run))
    for rid, resources in blocks:
        model = next(m for m in cfg["model_settings"] if f"_{m}_" in rid)
        assert f"gpu={cfg['model_settings'][model]['resources']['gpu']}" in resources, rid


def test_settings_blocks_may_not_set_grid_axes(tmp_path):
    cfg = yaml.safe_load(PAPER.read_text())
    cfg["dataset_settings"]["dolly"]["num_clients"] = 50  # would desync the run id from the run
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "num_clients" in proc.stderr + proc.stdout


@pytest.mark.parametrize("alias", ["datajuicer-1.3b", "llama-3b", "llama2-7b", "llama2-13b", "llama3-8b", "qwen2.5-7b"])
def test_paper_model_aliases_resolve_to_hub_ids(alias, monkeypatch):
    check_model_name(alias)
    assert ALIASES[alias]["kind"] == "hub" and "/" in ALIASES[alias]["hub_id"]
    # no network here: a clear one-line error naming the alias. huggingface_hub reads the variable
    # once at import, so the constant is patched too (else 45 s of retries per alias).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match=f"could not load model '{alias}'") as e:
        load_model_and_tokenizer(alias)
    assert "\n" not in str(e.value)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


NI_CPU = ROOT / "workflow/configs/ni_cpu.yaml"


@pytest.mark.parametrize("method", ["ferret", "fedavg"])
def test_ni_sample_end_to_end_on_the_tiny_model(tmp_path, method, data):
    """The ni_cpu.yaml settings with model=tiny: 3 rounds, one client per training task present
    (7 in the real sample, for which ni_cpu.yaml is written)."""
    ni = data / "natural-instructions"
    grid = yaml.safe_load(NI_CPU.read_text())
    present = {p.stem for p in (ni / "tasks").glob("*.json")}
    splits = {part: [t.strip() for t in (ni / f"splits/default/{part}_tasks.txt").read_text().split()]
              for part in ("train", "test")}
    train = [t for t in splits["train"] if t in present]
    settings = {**grid["settings"], "data_path": str(ni)}
    overrides = with_overrides([f"{k}={v}" for k, v in settings.items()],
                               f"method={method}", "model=tiny", "dataset=natural-instructions",
                               f"num_clients={len(train)}", f"K={grid['K'][0]}", "threads=1", "max_new_tokens=2")
    record = run(load_config(None, overrides), tmp_path)
    assert record["status"] == "ok"
    assert record["data"]["client_tasks"] == train
    assert record["data"]["clients"] == len(train)
    n_test = sum(1 for t in splits["test"] if t in present)
    assert record["data"]["eval_examples"] == 20 * n_test  # each sample test task has > 20 instances
    rows = _rows(tmp_path / "metrics.csv")
    assert [int(r["round"]) for r in rows] == [0, 1, 2, 3]
    assert rows[0]["eval_loss"] and rows[-1]["eval_loss"] and rows[0]["rouge_l"] and rows[-1]["rouge_l"]
    assert json.loads((tmp_path / "run.json").read_text())["config"]["dataset"] == "natural-instructions"


def test_gsm8k_run_logs_exact_match_accuracy(tmp_path, data):
    gsm8k = data / "gsm8k"
    cfg = load_config(None, ["model=tiny", "method=fedavg", "dataset=gsm8k", f"data_path={gsm8k}",
                             "num_clients=4", "participation=0.5", "rounds=1", "local_steps=1", "batch_size=1",
                             "eval_limit=4", "max_length=512", "max_new_tokens=2", "threads=1"])
    record = run(cfg, tmp_path)
    assert record["status"] == "ok" and record["data"]["eval_examples"] == 4
    rows = _rows(tmp_path / "metrics.csv")
    scored = [r for r in rows if r["rouge_l"]]
    assert scored and all(r["accuracy"] != "" and 0.0 <= float(r["accuracy"]) <= 1.0 for r in scored)
    assert all(r["accuracy"] == "" for r in rows if not r["rouge_l"])
