"""The Snakemake workflow: schema validation, the job list of the default grid, lint."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ferret.algorithms import registry
from ferret.config import RunConfig
from ferret.report.figures import FIGURES

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _expected_train_jobs(cfg: dict) -> int:
    """The grid points, computed independently of common.smk."""
    axes = ("methods", "models", "datasets", "num_clients", "K", "seeds")
    cfg = {**cfg, "methods": list(registry.METHODS) if cfg["methods"] == "all" else cfg["methods"]}
    points = set(itertools.product(*(cfg[a] for a in axes)))
    for axis, abl in cfg.get("ablations", {}).items():
        for value in abl["values"]:
            for seed in abl.get("seeds", cfg["seeds"]):
                p = {a: cfg[a][0] for a in axes}
                p.update(methods=abl["method"], seeds=seed, **{axis: value})
                points.add(tuple(p[a] for a in axes))
    return len(points)


def _job_counts(stdout: str) -> dict[str, int]:
    counts = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.mark.parametrize("name", ["default", "smoke"])
def test_dry_run_lists_every_job_of_the_grid(name):
    path = ROOT / "workflow" / "configs" / f"{name}.yaml"
    cfg = yaml.safe_load(path.read_text())
    proc = _snakemake("-n", "--forceall", "--cores", "2", "--configfile", str(path))
    assert proc.returncode == 0, proc.stderr
    counts = _job_counts(proc.stdout)
    n_train = _expected_train_jobs(cfg)
    assert counts["train"] == n_train
    # default: 9 methods x 2 seeds + 2 new K values + 2 new client counts;
    # smoke: 9 methods x 2 seeds + 3 new K values + 2 new client counts
    assert n_train == {"default": 22, "smoke": 23}[name]
    assert counts["prepare_model"] == 1 and counts["collect"] == 1 and counts["tables"] == 1
    assert counts["eval_untuned"] == 1  # one model, one data set, one eval set: round 0 evaluated once
    assert counts["figure"] == len(FIGURES)  # one job per figure of ferret.report.figures
    assert counts["total"] == n_train + 5 + len(FIGURES)  # + prepare, untuned, collect, tables, all
    # longest first: a train job's priority is its sampled clients x local steps x rounds
    s = cfg["settings"]
    priority = dict(re.findall(r"wildcards: run_id=(\S+)\n\s+priority: (\d+)", proc.stdout))
    assert len(priority) == n_train
    for rid, value in priority.items():
        n = int(re.search(r"_N(\d+)_", rid).group(1))
        assert int(value) == max(1, int(n * s["participation"])) * s["local_steps"] * s["rounds"], rid


BAD = [
    ("methods: [ferret, fedsgd]", "fedsgd"),
    ("K: [64, -3]", "-3"),
    ("seeds: [0, 1]\nbogus_key: 1", "bogus_key"),
    ("settings: {rounds: 2, lerning_rate: 0.1}", "lerning_rate"),
    ("settings: {participation: 1.5}", "participation=1.5"),
    ("settings: {train_per_client: 100000}", "too few distinct instances"),  # found before any job
]


@pytest.mark.parametrize("change,named", BAD)
def test_bad_config_fails_validation_before_any_job(tmp_path, change, named):
    cfg = yaml.safe_load((ROOT / "workflow/configs/smoke.yaml").read_text())
    for key, value in yaml.safe_load(change).items():  # nested like Snakemake merges config files
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = _snakemake("-n", "--cores", "1", "--configfile", str(bad))
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert named in text, text[-2000:]
    assert "Job stats" not in text  # failed before scheduling anything


def test_no_file_lists_the_methods_but_their_own():
    """The method list is derived from ferret/methods/: the schema names none, the default and
    smoke grids run `all` of them."""
    def enums(node: object) -> list:
        if isinstance(node, dict):
            return [*node.get("enum", []), *(e for v in node.values() for e in enums(v))]
        return [e for v in node for e in enums(v)] if isinstance(node, list) else []

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert not set(enums(schema)) & set(registry.METHODS)
    assert "fedavg" in enums({"a": [{"enum": ["fedavg"]}]})  # the check can fail
    for name in ("default", "smoke"):
        assert yaml.safe_load((ROOT / f"workflow/configs/{name}.yaml").read_text())["methods"] == "all"


def test_dry_run_needs_no_cores_argument():
    """README's `snakemake -n` (and `--unlock`) must work without --cores: no rule may size its
    threads from workflow.cores."""
    proc = _snakemake("-n", "--configfile", str(ROOT / "workflow/configs/smoke.yaml"))
    assert proc.returncode == 0, proc.stderr[-2000:]


# Every rule runs `sys.executable -m ferret`, the interpreter (and environment) that runs Snakemake,
# so a rule's conda env could never take effect: the one lint left is the advice to name one.
ACCEPTED_LINTS = {"Specify a conda environment or container for each rule.:"}


def test_lint_passes():
    proc = _snakemake("--lint")
    lints = set(re.findall(r"^\s+\* (.+)$", proc.stdout + proc.stderr, re.M))
    assert lints <= ACCEPTED_LINTS, proc.stdout + proc.stderr
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_profiles_are_valid_yaml_with_the_documented_keys():
    local = yaml.safe_load((ROOT / "workflow/profiles/local/config.yaml").read_text())
    slurm = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    assert local["cores"] == "all"
    assert slurm["executor"] == "slurm"
    assert {"slurm_partition", "slurm_account"} <= set(slurm["default-resources"])


def test_a_grid_file_stands_alone():
    """No setting of the default grid leaks into a grid given with --configfile."""
    default = yaml.safe_load((ROOT / "workflow/configs/default.yaml").read_text())["settings"]
    smoke = yaml.safe_load((ROOT / "workflow/configs/smoke.yaml").read_text())["settings"]
    configs = [yaml.safe_load((ROOT / path).read_text()) for path in _run_config_files("smoke")]
    assert configs
    for key in sorted(set(default) - set(smoke)):  # e.g. checkpoint_every
        assert all(c[key] == getattr(RunConfig, key) for c in configs), key
    assert all(c["num_tasks"] == smoke["num_tasks"] for c in configs)


def _run_config_files(name: str) -> list[str]:
    """The config files the dry run's `ferret run` commands name (asserting they hold no key=value)."""
    proc = _snakemake("-n", "-p", "--forceall", "--cores", "1", "--configfile", f"workflow/configs/{name}.yaml")
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = []
    for line in proc.stdout.splitlines():
        m = re.search(r"-m ferret (?:run|eval-untuned) --config (\S+) --out (\S+) >", line)
        if m and " run " in line:
            assert "=" not in line.split(" >")[0], line  # no key=value word
            files.append(m.group(1))
    return files


def test_each_run_reads_its_written_config():
    """The train command is `ferret run --config <file>`; the file is the run's whole RunConfig,
    load_config gives it back exactly, and the report rules log to the runs' W&B project."""
    from ferret.config import load_config

    files = _run_config_files("default")
    assert len(files) == 22
    for path in files:
        cfg = load_config(ROOT / path)
        assert (ROOT / path).read_text() == cfg.to_yaml()
        assert path == f"results/configs/default/{cfg.run_id}.yaml"
        assert cfg.untuned.startswith("results/untuned/") and cfg.threads == 1
        assert cfg.wandb_project == "ferret-bench"
    proc = _snakemake("-n", "-p", "--forceall", "--cores", "1")
    assert "--wandb-project ferret-bench" in proc.stdout


def test_config_files_are_rewritten_only_when_they_change(tmp_path):
    """An unchanged grid leaves every config file's mtime as it was (Snakemake reruns a job whose
    config file is newer than its outputs); a changed setting rewrites only the runs it changes."""
    files = [ROOT / p for p in _run_config_files("smoke")]
    before = {p: p.stat().st_mtime_ns for p in files}
    _run_config_files("smoke")
    assert {p: p.stat().st_mtime_ns for p in files} == before
    cfg = yaml.safe_load((ROOT / "workflow/configs/smoke.yaml").read_text())
    cfg.setdefault("method_settings", {})["fedavg"] = {"rounds": cfg["settings"]["rounds"] + 1}
    changed = tmp_path / "smoke.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    proc = _snakemake("-n", "--cores", "1", "--configfile", str(changed))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rewritten = {p.name for p in files if p.stat().st_mtime_ns != before[p]}
    assert rewritten and all(name.startswith("fedavg_") for name in rewritten), rewritten
    assert {p.name for p in files if p.name.startswith("fedavg_")} == rewritten
    _run_config_files("smoke")  # back to the grid as committed
