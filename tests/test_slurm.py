"""The workflow on a real one-node SLURM cluster, started here (scripts/slurm_single_node.sh).

The reduced smoke grid (tests/workflow_copy.py) runs through workflow/profiles/slurm plus a small
overlay for this machine: every run is a SLURM job (its job id in Snakemake's log, COMPLETED in
scontrol, the grid's mem_mb and runtime in its request); the tables and figures are built. Both
runs are then paused after their round-1 checkpoint and cancelled with scancel; the rerun resumes
them, and the resumed run's metrics equal an uninterrupted run's (timing aside).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ferret.config import load_config
from ferret.engine import run as run_in_process
from workflow_copy import METHODS, ROOT, copy_workflow, reduced_smoke, snakemake

SCRIPT = ROOT / "scripts" / "slurm_single_node.sh"
FAULT_SITE = str(ROOT / "tests" / "fault_site")
PAUSED = re.compile(r"ferret-test-pause pid=(\d+) at=round:1")
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+)")
TIMING = {"t_local_s", "t_encode_s", "t_aggregate_s", "t_eval_s", "t_round_s", "peak_mem_mb"}
# The overlay: this node's size, and fast status checks (the profile's 40 s first wait is for
# real clusters, where a job queues for a while).
OVERLAY = {"latency-wait": 5, "jobs": 2, "slurm-init-seconds-before-status-checks": 3}
RUN_RESOURCES = {"mem_mb": 1500, "runtime": 15}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """slurmctld, slurmd and munged for this module; stopped by their PIDs afterwards."""
    subprocess.run(["bash", str(SCRIPT), "install"], check=True, timeout=600)
    state = tmp_path_factory.mktemp("slurm")
    try:
        subprocess.run(["bash", str(SCRIPT), "start", str(state)], check=True, timeout=120)
        yield state
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], timeout=120)
        for name in ("munged", "slurmctld", "slurmd"):
            assert not (state / f"{name}.pid").exists(), f"{name} still has a PID file"


def _workflow(folder: Path) -> Path:
    cfg = reduced_smoke("slurm")
    cfg["model_settings"] = {"tiny": {"resources": RUN_RESOURCES}}
    copy_workflow(folder, cfg)
    profile = folder / "ci-profile"
    shutil.copytree(ROOT / "workflow" / "profiles" / "slurm", profile)
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    settings.update(OVERLAY)
    (profile / "config.yaml").write_text(yaml.safe_dump(settings))
    return profile


def _metrics(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out))


def _job_logs(folder: Path, rid: str) -> dict[str, Path]:
    """SLURM job id -> the plugin's log of a train job of run rid."""
    logs = (folder / ".snakemake" / "slurm_logs" / "rule_train").glob(f"*{rid}/*.log")
    return {log.stem: log for log in logs}


def test_smoke_grid_under_slurm_then_scancel_and_resume(cluster, tmp_path):
    profile = _workflow(tmp_path)
    runs = tmp_path / "results" / "runs" / "slurm"
    rids = {m: f"{m}_tiny_synthetic_N4_K16_s0" for m in METHODS}
    args = ("--profile", str(profile))
    t0 = time.monotonic()

    # 1. Every run pauses after its round-1 checkpoint; cancel each job as soon as it does.
    fault = {"FERRET_FAULT": "pause@round:1",
             "PYTHONPATH": os.pathsep.join([FAULT_SITE, str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=tmp_path, env={**os.environ, **fault},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cancelled: dict[str, str] = {}
    deadline = time.monotonic() + 240
    try:
        while len(cancelled) < len(rids) and time.monotonic() < deadline and proc.poll() is None:
            for rid in rids.values():
                log = tmp_path / "logs" / "train" / "slurm" / f"{rid}.log"
                if rid not in cancelled and log.is_file() and PAUSED.search(log.read_text()):
                    (job_id,) = _job_logs(tmp_path, rid)
                    cancelled[rid] = job_id
                    subprocess.run(["scancel", cancelled[rid]], check=True)
            time.sleep(0.5)
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert set(cancelled) == set(rids.values()), out[-3000:]
    assert proc.returncode != 0
    for rid, job_id in cancelled.items():
        assert _job(job_id)["JobState"] == "CANCELLED"
        assert not (runs / rid / "run.json").exists()  # the failed job's outputs are gone...
        assert (runs / rid / "checkpoints" / "round-000001").is_dir()  # ...its checkpoint is not
    t1 = time.monotonic()

    # 2. The rerun resumes both runs from their checkpoints and builds every table and figure.
    proc = snakemake(tmp_path, *args, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    t2 = time.monotonic()
    submitted = set(SUBMITTED.findall(text))
    for rid in rids.values():
        (job_id,) = set(_job_logs(tmp_path, rid)) - {cancelled[rid]}  # the rerun's job of this run
        assert job_id in submitted, (job_id, text[-3000:])
        job = _job(job_id)
        assert job["JobState"] == "COMPLETED", job
        # The grid's per-model resources reached the request (sbatch --mem, --time).
        assert job["MinMemoryNode"] == f"{RUN_RESOURCES['mem_mb']}M", job
        assert job["TimeLimit"] == f"00:{RUN_RESOURCES['runtime']:02d}:00", job
        assert "resuming after round 1" in (tmp_path / "logs" / "train" / "slurm" / f"{rid}.log").read_text()
        assert json.loads((runs / rid / "run.json").read_text())["status"] == "ok"
    for name in ("main", "cost", "claims"):
        assert (tmp_path / "results" / "tables" / f"{name}.md").stat().st_size > 0
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert len(figures) == 5, figures

    # 3. The resumed run's metrics equal an uninterrupted run of the same config.
    rid = rids["ferret"]
    config = json.loads((runs / rid / "run.json").read_text())["config"]
    (tmp_path / "reference.yaml").write_text(yaml.safe_dump(config))
    reference = tmp_path / "reference"
    run_in_process(load_config(str(tmp_path / "reference.yaml"), []), reference)
    assert _metrics(runs / rid / "metrics.csv") == _metrics(reference / "metrics.csv")
    print(f"SLURM: cancelled pass {t1 - t0:.0f} s, resumed pass {t2 - t1:.0f} s, "
          f"reference {time.monotonic() - t2:.0f} s")
