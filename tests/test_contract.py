"""Contract: every registered method runs one round with non-default shared settings.

A method that is only ever run at the defaults can break on any other value (FedZO, FedKSeed and
FedKSeed-Pro once raised NameError whenever weight_decay > 0); this runs each one with every shared
client-optimizer knob moved off its default at once, in bfloat16, on the tiny model."""

from __future__ import annotations

import csv
import json
import math
import os

import pytest
from conftest import tiny_overrides

from ferret.algorithms.registry import METHODS
from ferret.config import load_config
from ferret.engine import run

# Each knob moved off its default (see ferret/config.py): n_accum divides local_steps.
NON_DEFAULT = tiny_overrides(rounds=1, local_steps=2, n_accum=2, batch_size=1, train_per_client=4,
                             eval_per_task=1, num_tasks=2, max_new_tokens=2, threads=1,
                             weight_decay=0.01, momentum=0.9, grad_clip=1.0, equal_weight=False,
                             dtype="bfloat16", K=8)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_runs_with_non_default_shared_settings(method, tmp_path):
    cfg = load_config(None, [*NON_DEFAULT, f"method={method}"])
    record = run(cfg, tmp_path)
    assert record["status"] == "ok", record.get("error")
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["status"] == "ok"
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    trained = [r for r in rows if r.get("train_loss")]
    assert [int(r["round"]) for r in trained] == [1]
    assert math.isfinite(float(trained[0]["train_loss"]))
    assert math.isfinite(float(rows[-1]["eval_loss"]))


def _dry_run(tmp_path, grid: dict) -> str:
    """`snakemake -n` on the smoke grid with ``grid`` merged in as a grid file; the dry run's output."""
    import subprocess
    import sys

    import yaml
    from conftest import ROOT

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "1",
           "--configfile", str(ROOT / "workflow/configs/smoke.yaml"), str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}  # custom classes
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_a_grid_file_with_empty_ablations_removes_the_default_ones(tmp_path):
    out = _dry_run(tmp_path, {"methods": ["ferret"], "seeds": [0], "ablations": {}})
    train = {line.split("run_id=")[1].split(",")[0].strip() for line in out.splitlines() if "run_id=" in line}
    assert train == {"ferret_tiny_synthetic_N4_K16_s0"}


def test_a_custom_method_path_gives_a_slugified_run_id(tmp_path):
    out = _dry_run(tmp_path, {"methods": ["test_faults:NaNUpdate"], "seeds": [0], "ablations": {},
                              "settings": {"trust_custom_method": True}})
    assert "results/runs/smoke/test-faults-NaNUpdate_tiny_synthetic_N4_K16_s0/run.json" in out
    assert "test_faults:NaNUpdate_" not in out
