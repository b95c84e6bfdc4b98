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
from conftest import tiny_overrides, with_overrides
from fault_injection import fault_env, paused, signal_when_paused

from ferret.cli import main
from ferret.outdir import RunFolder

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
    assert main(["run", "--out", str(finished), *with_overrides(OVERRIDES, "K=8")]) == 2
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
        assert main(["run", "--out", str(finished), *with_overrides(OVERRIDES, "K=8"), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"in use by pid {os.getpid()}" in err
    (tmp_path / "f").write_text("x")
    assert main(["run", "--out", str(tmp_path / "f"), *OVERRIDES]) == 2
    assert "not a writable folder" in capsys.readouterr().err
    assert _snapshot(finished) == before


# ---- The fault matrix in real `ferret run` subprocesses. Each fault ends with a true
# status and one line on stderr, and the finished run beside it is unchanged byte for byte.



def _cli(out: Path, *extra: str, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    overrides = with_overrides(OVERRIDES, *(e for e in extra if "=" in e))
    cmd = [sys.executable, "-m", "ferret", "run", "--out", str(out), *overrides, *(e for e in extra if "=" not in e)]
    return subprocess.run(cmd, env={**os.environ, **(env or {})}, text=True, capture_output=True, timeout=timeout)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("ferret:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def _mount_tmpfs(where: Path, size: str, *options: str) -> bool:
    """A small tmpfs at ``where`` (needs root); False where the platform does not allow it."""
    where.mkdir(parents=True, exist_ok=True)
    opts = ",".join([f"size={size}", *options])
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    return proc.returncode == 0


@pytest.fixture
def small_fs(tmp_path):
    """A small file system of its own, so that filling it fills nothing else."""
    where = tmp_path / "fs"
    if not _mount_tmpfs(where, "48m"):
        pytest.skip("mount -t tmpfs needs root here; the full-disk case then cannot fill a disk safely")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def _copy_run(src: Path, dst: Path) -> dict[str, bytes]:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.csv", "run.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    return _snapshot(dst)


def _signal_after_round_1(out: Path, sig: int) -> tuple[int, str]:
    """A forced run of seed 1 into out, sent ``sig`` while it pauses after round 1 (the fault
    site); its exit status and stderr."""
    cmd = [sys.executable, "-m", "ferret", "run", "--out", str(out), *OVERRIDES, "seed=1", "--force"]
    # SIGINT at its default disposition in the child, as under an interactive shell: a test runner
    # started in the background (`cmd &`) ignores SIGINT, its children inherit that, and Python then
    # never raises KeyboardInterrupt.
    return signal_when_paused(cmd, "round:1", sig, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_read_only_out_fails_before_loading_with_one_line(finished, tmp_path):
    ro = tmp_path / "ro"
    if os.geteuid() == 0:  # root writes through file modes: make the file system read-only instead
        if not _mount_tmpfs(ro, "8m"):
            pytest.skip("root without mount: a read-only folder cannot be made")
        before = _copy_run(finished, ro / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    else:
        before = _copy_run(finished, ro / "run")
        (ro / "run").chmod(0o555)
    try:
        proc = _cli(ro / "run", "seed=1", "--force")
        assert proc.returncode == 2
        assert "--out" in _one_line(proc.stderr) and str(ro / "run") in proc.stderr
        assert _snapshot(ro / "run") == before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(ro)], check=False)
        else:
            (ro / "run").chmod(0o755)


def test_a_file_as_out_in_a_subprocess(tmp_path):
    (tmp_path / "f").write_text("x")
    proc = _cli(tmp_path / "f")
    assert proc.returncode == 2 and "not a writable folder" in _one_line(proc.stderr)
    assert (tmp_path / "f").read_text() == "x"


def test_full_disk_ends_failed_and_keeps_the_finished_run(finished, small_fs):
    out = small_fs / "run"
    before = _copy_run(finished, out)
    proc = _cli(out, "seed=1", "--force", env=fault_env("fill@round:1"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = _one_line(proc.stderr)
    assert line.startswith("ferret: failed:") and "No space left on device" in line, line
    assert json.loads((out / ".staging" / "run.json").read_text())["status"] == "failed"
    (small_fs / "run" / "filler").unlink(missing_ok=True)
    (small_fs / "run" / "checkpoints" / "filler").unlink(missing_ok=True)
    assert _snapshot(out) == before  # the finished run is still the visible one


def test_sigterm_on_a_forced_run_keeps_the_finished_one_and_resumes(finished, tmp_path):
    out = tmp_path / "run"
    before = _copy_run(finished, out)
    status, err = _signal_after_round_1(out, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM
    assert "ferret: interrupted:" in err and "stopped by SIGTERM" in err and "Traceback" not in err
    assert _snapshot(out) == before  # the finished run is still the visible one
    assert json.loads((out / ".staging" / "run.json").read_text())["status"] == "interrupted"
    assert (out / "checkpoints" / "round-000001").is_dir()

    assert main(["run", "--out", str(out), *OVERRIDES, "seed=1", "--force"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "ok" and record["resumed_from"] == [1]
    (aside,) = (out / "replaced").iterdir()
    assert _snapshot(aside) == before  # moved aside, never deleted


def test_sigint_ends_interrupted_and_keeps_the_finished_run(finished, tmp_path):
    out = tmp_path / "run"
    before = _copy_run(finished, out)
    status, err = _signal_after_round_1(out, signal.SIGINT)
    assert status == 128 + signal.SIGINT
    assert "ferret: interrupted:" in _one_line(err)
    assert _snapshot(out) == before
    assert json.loads((out / ".staging" / "run.json").read_text())["status"] == "interrupted"
    assert (out / "checkpoints" / "round-000001").is_dir()


def test_a_second_process_on_a_running_folder_stops_with_one_line(finished, tmp_path):
    out = tmp_path / "run"
    before = _copy_run(finished, out)
    cmd = [sys.executable, "-m", "ferret", "run", "--out", str(out), *OVERRIDES, "seed=1", "--force"]
    with paused(cmd, "round:1") as first:
        second = _cli(out, "seed=1", "--force")
        assert second.returncode == 2
        assert f"in use by pid {first.pid}" in _one_line(second.stderr)
        assert (out / "checkpoints" / "round-000001").is_dir()  # the second deleted nothing of the first's
        assert _snapshot(out) == before


def test_a_hub_id_offline_fails_fast_with_one_line(tmp_path):
    proc = _cli(tmp_path / "run", "model=ferret-bench-test/no-such-model", env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "ferret-bench-test/no-such-model" in line and "Retrying" not in proc.stderr
    assert not (tmp_path / "run" / "run.json").exists()
