"""The workflow on a real one-node SLURM cluster (the session's run: tests/slurm_smoke.py).

Every run is a SLURM job (its job id in Snakemake's log and the plugin's log folder, COMPLETED in
scontrol, the grid's mem_mb and runtime in its request); the tables and figures are built; a run
cancelled with scancel after its round-1 checkpoint is resumed by the rerun, and its metrics equal
an uninterrupted run's (timing aside). The daemons are stopped by PID at the end of the session.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import yaml
from slurm_smoke import RUN_RESOURCES, SlurmSmoke

from ferret.config import load_config
from ferret.engine import run as run_in_process

SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+)")
TIMING = {"t_local_s", "t_encode_s", "t_aggregate_s", "t_eval_s", "t_round_s", "peak_mem_train_mb", "peak_mem_eval_mb"}


def _job(job_id: str) -> dict[str, str]:
    """scontrol's record of a job (kept MinJobAge=600 s after it ends, scripts/slurm_single_node.sh)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out))


def _metrics(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def test_cancelled_runs_fail_the_first_pass_and_keep_their_checkpoints(slurm_smoke: SlurmSmoke):
    status, out = slurm_smoke.pass1
    assert set(slurm_smoke.cancelled) == set(slurm_smoke.run_ids.values()), out[-3000:]
    assert status != 0
    submitted = set(SUBMITTED.findall(out))
    for rid, job_id in slurm_smoke.cancelled.items():
        assert job_id in submitted
        assert _job(job_id)["JobState"] == "CANCELLED"
        left = slurm_smoke.after_pass1[rid]
        assert "run.json" not in left and "metrics.csv" not in left, left  # the failed job's outputs are gone...
        assert "checkpoints/round-000001" in left, left  # ...its checkpoint is not


def test_rerun_completes_every_run_as_a_slurm_job_with_the_grid_resources(slurm_smoke: SlurmSmoke):
    status, out = slurm_smoke.pass2
    assert status == 0, out[-4000:]
    submitted = set(SUBMITTED.findall(out))
    for rid in slurm_smoke.run_ids.values():
        (job_id,) = set(slurm_smoke.job_logs(rid)) - {slurm_smoke.cancelled[rid]}  # the rerun's job
        assert job_id in submitted, (job_id, out[-3000:])
        job = _job(job_id)
        assert job["JobState"] == "COMPLETED", job
        assert job["MinMemoryNode"] == f"{RUN_RESOURCES['mem_mb']}M", job  # sbatch --mem from the grid
        assert job["TimeLimit"] == f"00:{RUN_RESOURCES['runtime']:02d}:00", job  # and --time
        log = (slurm_smoke.folder / "logs" / "train" / "slurm" / f"{rid}.log").read_text()
        assert "resuming after round 1" in log
        assert json.loads((slurm_smoke.runs / rid / "run.json").read_text())["status"] == "ok"


def test_tables_and_figures_are_built(slurm_smoke: SlurmSmoke):
    assert slurm_smoke.pass2[0] == 0
    for name in ("main", "cost", "claims"):
        assert (slurm_smoke.folder / "results" / "tables" / f"{name}.md").stat().st_size > 0
    figures = sorted(p.stem for p in (slurm_smoke.folder / "figures").glob("*.png"))
    from ferret.report.figures import FIGURES

    assert figures == sorted(FIGURES)


def test_resumed_run_has_the_metrics_of_an_uninterrupted_one(slurm_smoke: SlurmSmoke, tmp_path):
    rid = slurm_smoke.run_ids["ferret"]
    record = json.loads((slurm_smoke.runs / rid / "run.json").read_text())
    assert record["resumed_from"] == [1]
    # Without the workflow's shared untuned folder (a path relative to the workflow): round 0 is
    # then evaluated here, and must still come out the same.
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**record["config"], "untuned": ""}))
    run_in_process(load_config(tmp_path / "config.yaml"), tmp_path / "reference")
    assert _metrics(slurm_smoke.runs / rid / "metrics.csv") == _metrics(tmp_path / "reference" / "metrics.csv")

