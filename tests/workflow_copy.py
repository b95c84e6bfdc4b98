"""A copy of the workflow with a reduced smoke grid (tests/slurm_smoke.py).

Two methods, one seed, three rounds of the tiny model: every rule of the workflow runs (prepare,
train, collect, tables, figures) in about a minute on two cores. The grid becomes the copy's
default config, so a plain `snakemake` in the copy runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ferret.models import prepare_model

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["ferret", "fedavg"]


def reduced_smoke(experiment: str, **settings: object) -> dict:
    """smoke.yaml cut down to METHODS x seed 0, no ablations, W&B off; ``settings`` override."""
    cfg = yaml.safe_load((ROOT / "workflow" / "configs" / "smoke.yaml").read_text())
    # resources: the session's tokenizer cache (tests/conftest.py), so no job converts it again.
    cfg.update(experiment=experiment, methods=METHODS, seeds=[0], wandb={"mode": "disabled"},
               resources=str(ROOT / "resources"))
    cfg.pop("ablations", None)
    cfg["settings"].update({"rounds": 3, "num_tasks": 2, "eval_per_task": 1, "checkpoint_every": 1, **settings})
    return cfg


def copy_workflow(dest: Path, cfg: dict) -> Path:
    """Snakefile and workflow/ under dest, with cfg as the default config, and the prepare job's
    marker for the tiny model: its tokenizer is already in cfg's `resources` (the session's cache,
    tests/conftest.py), so no job converts it again."""
    shutil.copy(ROOT / "Snakefile", dest)
    shutil.copytree(ROOT / "workflow", dest / "workflow")
    (dest / "workflow" / "configs" / "default.yaml").write_text(yaml.safe_dump(cfg))
    (dest / "resources" / "prepared").mkdir(parents=True)
    (dest / "resources" / "prepared" / "tiny.txt").write_text(f"{prepare_model('tiny', Path(cfg['resources']))}\n")
    return dest


def snakemake(cwd: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess:
    """`python -m snakemake ARGS` in cwd, this checkout first on PYTHONPATH (jobs import it too)."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
