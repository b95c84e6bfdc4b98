"""`ferret` in a subprocess with a fault injected by tests/fault_site/sitecustomize.py (which
patches a process started with FERRET_FAULT set): the environment, and the wait for a pause."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULT_SITE = str(ROOT / "tests" / "fault_site")
PAUSED = re.compile(r"ferret-test-pause pid=(\d+) at=(\S+)")


def fault_env(spec: str) -> dict[str, str]:
    """This process's environment with FERRET_FAULT=``spec`` and the fault site first on the path."""
    return {**os.environ, "FERRET_FAULT": spec, "PYTHONPATH": os.pathsep.join([FAULT_SITE, str(ROOT)])}


@contextlib.contextmanager
def paused(cmd: list[str], point: str, **popen) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` with ``pause@point`` injected and yield it once it pauses there (what it prints
    to stderr after the pause stays readable); it is killed and reaped on leaving."""
    proc = subprocess.Popen(cmd, env=fault_env(f"pause@{point}"), text=True, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, **popen)
    try:
        for line in proc.stderr:
            m = PAUSED.search(line)
            if m:
                assert (int(m[1]), m[2]) == (proc.pid, point)
                break
        else:
            raise AssertionError(f"exited with status {proc.wait()} before pausing at {point}")
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def signal_when_paused(cmd: list[str], point: str, sig: int = signal.SIGKILL, **popen) -> tuple[int, str]:
    """Run ``cmd`` until it pauses at ``point``, send it ``sig``; (its exit status, its stderr after the pause)."""
    with paused(cmd, point, **popen) as proc:
        proc.send_signal(sig)
        rest = proc.stderr.read()
        return proc.wait(timeout=60), rest
