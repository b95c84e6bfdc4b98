"""The reduced smoke grid (tests/workflow_copy.py) on a real one-node SLURM cluster, once per session.

tests/test_slurm.py checks what happened, and tests/test_snakemake_report.py builds the report
from the finished workflow, so the suite runs the grid once (CI time). The fixture (imported by
tests/conftest.py) starts the cluster (scripts/slurm_single_node.sh, installing the Debian
packages first if needed), and runs the workflow through workflow/profiles/slurm plus a small
overlay for this machine, twice:

1. every run pauses after its round-1 checkpoint (tests/fault_site) and its job is cancelled
   with scancel; the workflow fails;
2. the rerun resumes the runs from their checkpoints and builds the tables and figures.

The daemons are stopped by their PIDs when the session ends.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fault_injection import fault_env
from workflow_copy import METHODS, ROOT, copy_workflow, reduced_smoke, snakemake

SCRIPT = ROOT / "scripts" / "slurm_single_node.sh"
PAUSED = re.compile(r"ferret-test-pause pid=(\d+) at=round:1")
EXPERIMENT = "slurm"
# The overlay: this node's size, and fast status checks (the profile's 40 s first wait is meant
# for real clusters, where a job queues for a while).
OVERLAY = {"latency-wait": 5, "jobs": 2, "slurm-init-seconds-before-status-checks": 3}
RUN_RESOURCES = {"mem_mb": 1500, "runtime": 15}  # model_settings.tiny.resources of the grid


@dataclasses.dataclass
class SlurmSmoke:
    folder: Path                 # the workflow copy, finished
    state: Path                  # the cluster's state folder (slurm.conf, logs, PIDs)
    run_ids: dict[str, str]      # method -> run id
    cancelled: dict[str, str]    # run id -> SLURM job id cancelled in pass 1
    pass1: tuple[int, str]       # (exit status, Snakemake's output)
    pass2: tuple[int, str]
    seconds: dict[str, float]    # wall-clock of each pass
    after_pass1: dict[str, set[str]] = dataclasses.field(default_factory=dict)  # run id -> files left

    @property
    def runs(self) -> Path:
        return self.folder / "results" / "runs" / EXPERIMENT

    def job_logs(self, rid: str) -> dict[str, Path]:
        """SLURM job id -> the executor plugin's log of a train job of run rid."""
        logs = (self.folder / ".snakemake" / "slurm_logs" / "rule_train").glob(f"*{rid}/*.log")
        return {log.stem: log for log in logs}


def _copy(folder: Path) -> Path:
    cfg = reduced_smoke(EXPERIMENT)
    cfg["model_settings"] = {"tiny": {"resources": RUN_RESOURCES}}
    copy_workflow(folder, cfg)  # with the prepare job's marker: no SLURM job for seconds of work
    profile = folder / "ci-profile"
    shutil.copytree(ROOT / "workflow" / "profiles" / "slurm", profile)
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    settings.update(OVERLAY)
    (profile / "config.yaml").write_text(yaml.safe_dump(settings))
    return profile


def _cancel_when_paused(smoke: SlurmSmoke, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(smoke.cancelled) < len(smoke.run_ids) and time.monotonic() < deadline and proc.poll() is None:
        for rid in smoke.run_ids.values():
            log = smoke.folder / "logs" / "train" / EXPERIMENT / f"{rid}.log"
            if rid not in smoke.cancelled and log.is_file() and PAUSED.search(log.read_text()):
                (job_id,) = smoke.job_logs(rid)
                subprocess.run(["scancel", job_id], check=True)
                smoke.cancelled[rid] = job_id
        time.sleep(0.5)


@pytest.fixture(scope="session")
def slurm_smoke(tmp_path_factory) -> SlurmSmoke:
    subprocess.run(["bash", str(SCRIPT), "install"], check=True, timeout=600)
    state = tmp_path_factory.mktemp("slurm-state")
    folder = tmp_path_factory.mktemp("slurm-smoke")
    profile = _copy(folder)
    try:
        subprocess.run(["bash", str(SCRIPT), "start", str(state)], check=True, timeout=120)
        smoke = SlurmSmoke(folder, state, {m: f"{m}_tiny_synthetic_N4_K16_s0" for m in METHODS}, {},
                           (0, ""), (0, ""), {})
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--profile", str(profile)], cwd=folder,
                                env=fault_env("pause@round:1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            _cancel_when_paused(smoke, proc, timeout=240)
            out, _ = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
        smoke.pass1 = (proc.returncode, out)
        for rid in smoke.run_ids.values():
            smoke.after_pass1[rid] = {str(p.relative_to(smoke.runs / rid)) for p in (smoke.runs / rid).rglob("*")}
        t1 = time.monotonic()
        done = snakemake(folder, "--profile", str(profile), timeout=300)
        smoke.pass2 = (done.returncode, done.stdout + done.stderr)
        smoke.seconds = {"pass1": t1 - t0, "pass2": time.monotonic() - t1}
        print(f"SLURM smoke: cancelled pass {t1 - t0:.0f} s, resumed pass {smoke.seconds['pass2']:.0f} s")
        yield smoke
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], timeout=120)
