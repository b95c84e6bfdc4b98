"""Fault injection with real processes: SIGKILL between rounds and in the middle of writes, then
resume; NaN losses and updates end a run as 'diverged' without stopping the workflow.

The kill points and NaN losses are injected from outside the shipped code: tests/fault_site/
sitecustomize.py patches every `ferret run` subprocess started with FERRET_FAULT set; in process,
monkeypatch does the same."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from fault_injection import PAUSED, fault_env, signal_when_paused
from workflow_copy import copy_workflow, reduced_smoke

from baselines.fedavg import FedAvg
from ferret.cli import main
from ferret.config import load_config
from ferret.engine import run
from ferret.outdir import tampered
from ferret.report.collect import collect
from ferret.report.tables import main_table

TIMING = {"t_local_s", "t_encode_s", "t_aggregate_s", "t_eval_s", "t_round_s", "peak_mem_train_mb", "peak_mem_eval_mb"}
OVERRIDES = tiny_overrides(method="ferret", rounds=4, num_tasks=2, eval_per_task=1, eval_every=1, threads=1,
                           checkpoint_every=1) + ["method_options.ferret.basis=rademacher"]


def _metrics(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _kill_at(out: Path, point: str) -> None:
    """Start `ferret run`, wait until it pauses at ``point``, SIGKILL it."""
    cmd = [sys.executable, "-m", "ferret", "run", "--out", str(out), *OVERRIDES]
    assert signal_when_paused(cmd, point)[0] == -signal.SIGKILL


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run(load_config(None, OVERRIDES), out)
    return _metrics(out), (out / "examples.csv").read_text()


@pytest.mark.parametrize("point,resumes_after", [
    ("round:2", 2),                # between rounds: after round 2's checkpoint
    ("checkpoint:3", 2),           # in the middle of writing round 3's checkpoint
    ("write:metrics.csv#3", 1),    # in the middle of writing round 2's row
])
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(tmp_path, uninterrupted, point, resumes_after):
    uninterrupted, examples = uninterrupted
    out = tmp_path / "run"
    _kill_at(out, point)
    # What the kill left is never mistaken for a result: nothing is published, the staged run.json
    # says running and the staged metrics.csv parses.
    assert not (out / "run.json").exists() and not (out / "metrics.csv").exists()
    assert json.loads((out / ".staging" / "run.json").read_text())["status"] == "running"
    rows = _metrics(out / ".staging")
    assert rows == uninterrupted[: len(rows)]
    with pytest.raises(ValueError, match="no valid runs"):
        collect([out])

    proc = subprocess.Popen([sys.executable, "-m", "ferret", "run", "--out", str(out), *OVERRIDES], text=True,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert f"resuming after round {resumes_after}" in err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "ok" and record["resumed_from"] == [resumes_after]
    assert _metrics(out) == uninterrupted
    assert (out / "examples.csv").read_text() == examples  # per-example scores survive the resume too
    assert sorted(p.name for p in out.iterdir()) == ["examples.csv", "metrics.csv", "run.json"]  # no temps/checkpoints


def _nan_at(monkeypatch, method: str, round_: int) -> None:
    """METHOD's local training returns a NaN loss in round ``round_``."""
    from ferret.algorithms import registry

    real = registry.resolve

    def resolve(name, *args, **kwargs):
        cls = real(name, *args, **kwargs)
        if name != method:
            return cls

        class NaNLoss(cls):
            def local_train(self, model, batches, client, ctx):
                loss = super().local_train(model, batches, client, ctx)
                return float("nan") if ctx.round == round_ else loss

        return NaNLoss

    monkeypatch.setattr(registry, "resolve", resolve)


def test_nan_loss_at_round_2_ends_the_run_as_diverged(tmp_path, monkeypatch, capsys, uninterrupted):
    _nan_at(monkeypatch, "ferret", 2)
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *OVERRIDES]) == 0  # a result, not a failed job
    assert "status=diverged" in capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "diverged" and record["diverged_round"] == 2
    assert "training loss is nan at round 2" in record["error"]
    assert _metrics(out) == uninterrupted[0][:2]  # rounds 0 and 1 kept, as computed
    assert not (out / "checkpoints").exists()
    df = collect([out])
    assert df["status"].unique().tolist() == ["diverged"] and df["round"].tolist() == [0, 1]


class NaNUpdate(FedAvg):
    """FedAvg whose server update turns NaN at round 2 (the losses stay finite)."""

    @torch.no_grad()
    def aggregate(self, ctx) -> None:
        super().aggregate(ctx)
        if ctx.round == 2:
            next(iter(self.global_params.values()))[0] = float("nan")


def test_nan_update_ends_the_run_as_diverged(tmp_path):
    record = run(load_config(None, tiny_overrides(method="test_faults:NaNUpdate", rounds=3, num_tasks=2,
                                                  eval_per_task=1, trust_custom_method="true")), tmp_path)
    assert record["status"] == "diverged" and record["diverged_round"] == 2
    assert "global update holds NaN/Inf at round 2" in record["error"]
    assert [r["round"] for r in _metrics(tmp_path)] == ["0", "1"]


def _snakemake(cwd: Path, env: dict[str, str], **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "results/tables/main.md", "--cores", "1", "--keep-going"]
    return subprocess.Popen(cmd, cwd=cwd, env=env, text=True, **popen)


def test_workflow_resumes_killed_jobs_and_carries_on_past_a_diverged_run(tmp_path):
    """Two runs in a copy of the workflow: both are killed after round 1; the rerun resumes both,
    one diverges at round 2 (exit 0) and the collect and tables jobs still run and mark it."""
    copy_workflow(tmp_path, reduced_smoke("faults"))  # ferret + fedavg, seed 0, 3 rounds
    runs = tmp_path / "results" / "runs" / "faults"
    ids = {"ferret": "ferret_tiny_synthetic_N4_K16_s0", "fedavg": "fedavg_tiny_synthetic_N4_K16_s0"}
    nan = fault_env("nan@fedavg:2")

    proc = _snakemake(tmp_path, fault_env("nan@fedavg:2,pause@round:1"),
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed: set[str] = set()
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            for log in (tmp_path / "logs" / "train" / "faults").glob("*.log"):
                m = PAUSED.search(log.read_text())
                if m and log.stem not in killed:
                    os.kill(int(m.group(1)), signal.SIGKILL)
                    killed.add(log.stem)
            time.sleep(0.2)
    finally:
        proc.kill()
    assert proc.wait() != 0 and killed == set(ids.values())
    for rid in ids.values():  # Snakemake deleted the failed jobs' outputs, not the checkpoints
        assert not (runs / rid / "run.json").exists()
        assert (runs / rid / "checkpoints" / "round-000001").is_dir()

    proc = _snakemake(tmp_path, nan, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    for rid in ids.values():
        assert "resuming after round 1" in (tmp_path / "logs" / "train" / "faults" / f"{rid}.log").read_text()
    ok = json.loads((runs / ids["ferret"] / "run.json").read_text())
    diverged = json.loads((runs / ids["fedavg"] / "run.json").read_text())
    assert ok["status"] == "ok" and diverged["status"] == "diverged" and diverged["diverged_round"] == 2
    assert [r["round"] for r in _metrics(runs / ids["fedavg"])] == ["0", "1"]
    assert [r["round"] for r in _metrics(runs / ids["ferret"])] == ["0", "1", "2", "3"]
    assert "[1 diverged]" in (tmp_path / "results" / "tables" / "main.md").read_text()
    import pandas as pd

    table = main_table(pd.read_csv(tmp_path / "results" / "all_runs.csv"))
    assert table.loc["fedavg"].iloc[0] == "– [1 diverged]"


def test_keep_going_builds_the_reports_past_failed_runs_then_exits_nonzero(tmp_path):
    """`snakemake --keep-going` on a grid where one run fails before round 0 (a peft target that
    matches no module) and one in round 2: both publish run.json marked failed, collect, the tables
    and the figures are built with both marked, and only then does the workflow say how many runs
    failed and exit non-zero. The run that succeeded is as it published itself (its checksums)."""
    cfg = reduced_smoke("keepgoing")  # 3 rounds
    cfg["methods"] = ["ferret", "fedavg", "fedit"]
    cfg["method_options"] = {"fedit": {"target_modules": "no_such_module"}}
    copy_workflow(tmp_path, cfg)
    runs = tmp_path / "results" / "runs" / "keepgoing"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "all", "--keep-going"]
    env = fault_env("raise@fedavg:2")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, text=True, capture_output=True, timeout=400)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert "2 of 3 runs failed" in text, text[-3000:]
    before_round0 = json.loads((runs / "fedit_tiny_synthetic_N4_K16_s0" / "run.json").read_text())
    assert before_round0["status"] == "failed" and "no_such_module" in before_round0["error"]
    assert (tmp_path / before_round0["traceback"]).is_file()  # relative to the workflow's folder
    in_round2 = json.loads((runs / "fedavg_tiny_synthetic_N4_K16_s0" / "run.json").read_text())
    assert in_round2["status"] == "failed" and "injected failure in round 2" in in_round2["error"]
    assert [r["round"] for r in _metrics(runs / "fedavg_tiny_synthetic_N4_K16_s0")] == ["0", "1"]
    ok = runs / "ferret_tiny_synthetic_N4_K16_s0"
    assert json.loads((ok / "run.json").read_text())["status"] == "ok"
    main_md = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert main_md.count("[1 failed]") >= 2, main_md
    import pandas as pd

    statuses = pd.read_csv(tmp_path / "results" / "all_runs.csv").groupby("method")["status"].first()
    assert statuses.to_dict() == {"ferret": "ok", "fedavg": "failed", "fedit": "failed"}
    for figure in ("convergence_round", "figure1"):
        assert (tmp_path / "figures" / f"{figure}.pdf").stat().st_size > 0
    assert tampered(ok, json.loads((ok / "run.json").read_text())) == []  # the ok run, as published
