"""A method is one file: it registers itself with its light options, and every list of methods
(`ferret show-config`, `methods: all`, the reports) derives from the registrations; validating a
grid (`snakemake -n`) imports neither torch nor peft."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import RESOURCES, ROOT

from ferret.algorithms import registry

# A whole new method in one file: FedAvg whose server moves only part of the way to the average.
NEW_METHOD = '''"""FedDamped: FedAvg with a damped server step, w <- w + step (avg - w)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from baselines.fedavg import FedAvg
from ferret.algorithms.registry import register


@dataclass(frozen=True)
class FedDampedOptions:
    step: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.step <= 1:
            raise ValueError(f"step={self.step!r}: must be in (0, 1]")


class FedDamped(FedAvg):
    @torch.no_grad()
    def aggregate(self, ctx) -> None:
        for name, g in self.global_params.items():
            g.add_(self._sum[name] - g, alpha=self.options.step)
        self._sum = {}


register("feddamped", FedDampedOptions, __name__ + ":FedDamped")
'''


def _ferret(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ferret", "--resources", str(RESOURCES), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_a_new_method_is_one_file(tmp_path):
    plugins = tmp_path / "plugins"
    (plugins / "ferret" / "methods").mkdir(parents=True)
    (plugins / "ferret" / "methods" / "feddamped.py").write_text(NEW_METHOD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), str(ROOT)]), "WANDB_MODE": "disabled"}
    assert "feddamped" not in registry.METHODS  # only the file adds it

    shown = _ferret("show-config", env=env, cwd=tmp_path).stdout
    assert re.search(r"^\s+feddamped\s+step=0\.5$", shown, re.M), shown[-1500:]

    grid = yaml.safe_load((ROOT / "workflow/configs/smoke.yaml").read_text())
    grid.update(experiment="new-method", seeds=[0], ablations={}, wandb={"mode": "disabled"},
                method_options={"feddamped": {"step": "2.5e-1"}})  # YAML 1.1 reads this as a string
    grid["settings"].update(rounds=2, eval_every=1)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "1",
                           "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(tmp_path / "grid.yaml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rid = "feddamped_tiny_synthetic_N4_K16_s0"
    assert f"results/runs/new-method/{rid}/run.json" in proc.stdout
    config = yaml.safe_load((tmp_path / f"results/configs/new-method/{rid}.yaml").read_text())
    assert config["method"] == "feddamped" and config["method_options"]["feddamped"] == {"step": 0.25}

    # Run it from its config file (round 0 evaluated in the run), then report on it.
    config["untuned"] = ""
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    _ferret("run", "--config", "run.yaml", "--out", "run", env=env, cwd=tmp_path)
    _ferret("collect", "run", "--out", "all_runs.csv", env=env, cwd=tmp_path)
    _ferret("tables", "--input", "all_runs.csv", "--out", "tables", "--wandb-mode", "disabled", env=env, cwd=tmp_path)
    assert "feddamped" in (tmp_path / "tables" / "main.md").read_text()
    _ferret("figures", "--input", "all_runs.csv", "--out", "figures", "--only", "convergence_round",
            "--wandb-mode", "disabled", env=env, cwd=tmp_path)
    assert (tmp_path / "figures" / "convergence_round.png").stat().st_size > 0


def _imported(stderr: str) -> set[str]:
    """Top-level packages named in `python -X importtime` output."""
    return {m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s+([\w.]+)$", stderr, re.M)}


def test_dry_run_of_the_default_grid_imports_neither_torch_nor_peft(tmp_path):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--forceall", "--cores", "1",
                           "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(ROOT / "workflow/configs/default.yaml")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = _imported(proc.stderr)
    assert {"snakemake", "ferret"} <= imported  # the grid was validated by ferret itself
    assert not {"torch", "peft", "transformers"} & imported
    assert all(f"method={m}" not in proc.stdout for m in registry.METHODS)  # no key=value words
    # the check can fail: running a method's implementation does import torch
    heavy = subprocess.run([sys.executable, "-X", "importtime", "-c", "import baselines.fedavg"],
                           capture_output=True, text=True, timeout=300)
    assert "torch" in _imported(heavy.stderr)
