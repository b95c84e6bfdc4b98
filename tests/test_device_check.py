"""scripts/device_check.sh: its CPU path (the same steps at tiny shapes) runs here and writes the
JSON and markdown a GPU run would; a step that hangs, fails or runs out of memory is recorded and
the others still run; the CUDA plan fits the 8-minute call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ferret.bench import device_check as D

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"ferret", "fedavg", "fedkseed", "fedzo"}


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("device_check")
    env = {**os.environ, "DEVICE_CHECK_CPU": "1", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "device_check.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=3000)
    return proc, out


def test_cpu_check_runs_every_step_and_writes_json_and_markdown(cpu_check):
    proc, out = cpu_check
    report = json.loads((out / "device_check.json").read_text())
    by_name = {s["name"]: s for s in report["steps"]}
    assert list(by_name) == [s.name for s in D.steps(False, out, [])], list(by_name)
    failed = {n: (s["status"], s["summary"]) for n, s in by_name.items() if s["status"] != "ok"}
    assert not failed and proc.returncode == 0, (failed, proc.stdout[-2000:], proc.stderr[-2000:])
    assert report["cuda"] is False and report["seconds"] <= report["limit_s"]
    for s in report["steps"]:
        assert 0 < s["seconds"] <= s["budget_s"] + 5, s["name"]
    assert "skipped" in by_name["cuda_tests"]["summary"]  # CPU: every CUDA test collected and skipped
    assert by_name["kernel_speed"]["tables"]["projection"], "no kernel speed rows"
    for name in [n for n in by_name if n.startswith("peak_13b_")] + ["round_3b"]:
        rows = by_name[name]["tables"]["round"]
        assert {r["method"] for r in rows} == (METHODS if name == "round_3b" else METHODS | {"fedit"}), name
        assert all(float(r["peak_mem_gb"]) > 0 for r in rows), name
    ckpt = {r["method"]: r for r in by_name["checkpoint"]["tables"]["checkpoint"]}
    assert set(ckpt) == {"ferret", "fedavg"}
    assert all(float(r["checkpoint_s"]) > 0 and int(r["checkpoint_bytes"]) > 0 for r in ckpt.values())
    md = (out / "device_check.md").read_text()
    for name in by_name:
        assert f"| {name} | ok |" in md, name
    assert "## checkpoint: checkpoint" in md and "## round_3b: round" in md
    assert "===== checkpoint" in (out / "device_check.log").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["device_check.json", "device_check.log", "device_check.md"]


@pytest.mark.parametrize("code,status", [
    ("import time; time.sleep(60)", "timeout"),
    ("raise SystemExit('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB')", "oom"),
    ("raise SystemExit('ValueError: unknown preset')", "failed"),
    ("print('3 passed')", "ok"),
])
def test_a_step_records_its_outcome_and_never_outlives_its_budget(tmp_path, code, status):
    log = tmp_path / "log"
    step = D.Step("s", 3, [sys.executable, "-c", code])
    r = D.run_step(step, log, time_left_s=100, cwd=tmp_path)
    assert r.status == status and r.seconds < 15, r
    assert r.summary and r.summary in log.read_text() or status == "timeout"


def test_a_step_without_time_left_is_skipped_not_started(tmp_path):
    r = D.run_step(D.Step("s", 60, [sys.executable, "-c", "open('ran', 'w')"]), tmp_path / "log", 2, tmp_path)
    assert r.status == "skipped" and not (tmp_path / "ran").exists()


def test_the_cuda_plan_fits_the_call_and_covers_what_a_gpu_must_show(tmp_path):
    plan = D.steps(True, tmp_path, ["true"])
    assert sum(s.budget_s for s in plan) <= D.LIMIT_S <= 8 * 60 - 10
    peaks = [s for s in plan if s.name.startswith("peak_13b_")]
    combos = {(s.argv[s.argv.index("--dtype") + 1], s.argv[s.argv.index("--seq-len") + 1]) for s in peaks}
    assert combos == {(dt, n) for dt in ("bfloat16", "float16") for n in ("512", "1024")}
    assert all(s.argv[s.argv.index("--preset") + 1] == "llama2-13b" for s in peaks)
    round_3b = next(s for s in plan if s.name == "round_3b")
    assert round_3b.argv[round_3b.argv.index("--preset") + 1] == "llama-3b"
    assert {m.split(":")[0] for m in round_3b.argv[round_3b.argv.index("--methods") + 1].split(",")} == METHODS
    assert all("--device" not in s.argv or "cuda" in s.argv for s in plan)
