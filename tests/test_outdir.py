"""The --out protocol (ferret/outdir.py): lock, already done, refuse / --force, SIGTERM -> interrupted.
Each test asserts that the finished run already in the folder is unchanged byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ferret.cli import main
from ferret.outdir import RunFolder

from conftest import ROOT, tiny_overrides

OVERRIDES = tiny_overrides(rounds=3, num_tasks=2, eval_per_task=1, threads=1, checkpoint_every=1)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("metrics.csv", "run.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", "--out", str(out), *OVERRIDES]) == 0
    return out


def test_same_config_is_a_no_op_and_another_is_refused(finished, capsys):
    before = _snapshot(finished)
    assert main(["run", "--out", str(finished), *OVERRIDES]) == 0
    assert "already done" in capsys.readouterr().out
    assert main(["run", "--out", str(finished), *OVERRIDES, "K=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "differs in K" in err and "--force" in err
    assert _snapshot(finished) == before
    assert oct((finished / "run.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_busy_folder_and_a_file_as_out_stop_with_one_line(finished, tmp_path, capsys):
    before = _snapshot(finished)
    with RunFolder(finished, {}, force=True):  # holds the lock as a running process would
        assert main(["run", "--out", str(finished), *OVERRIDES, "K=8", "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"in use by pid {os.getpid()}" in err
    (tmp_path / "f").write_text("x")
    assert main(["run", "--out", str(tmp_path / "f"), *OVERRIDES]) == 2
    assert "not a writable folder" in capsys.readouterr().err
    assert _snapshot(finished) == before


def test_sigterm_on_a_forced_run_keeps_the_finished_one_and_resumes(finished, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("metrics.csv", "run.json"):
        (out / name).write_bytes((finished / name).read_bytes())
    before = _snapshot(out)
    env = {**os.environ, "FERRET_FAULT": "pause@round:1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "fault_site"), str(ROOT)])}
    cmd = [sys.executable, "-m", "ferret", "run", "--out", str(out), *OVERRIDES, "seed=1", "--force"]
    proc = subprocess.Popen(cmd, env=env, text=True, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    for line in proc.stderr:
        if "ferret-test-pause" in line:
            proc.send_signal(signal.SIGTERM)
            break
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert "ferret: interrupted:" in err and "stopped by SIGTERM" in err and "Traceback" not in err
    assert _snapshot(out) == before  # the finished run is still the visible one
    assert json.loads((out / ".staging" / "run.json").read_text())["status"] == "interrupted"
    assert (out / "checkpoints" / "round-000001").is_dir()

    assert main(["run", "--out", str(out), *OVERRIDES, "seed=1", "--force"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "ok" and record["resumed_from"] == [1]
    (aside,) = (out / "replaced").iterdir()
    assert _snapshot(aside) == before  # moved aside, never deleted
