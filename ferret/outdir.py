"""The ``--out`` protocol: one run folder, one writer, and a result that appears only when complete.

Layout of a run folder ``<out>``::

    <out>/metrics.csv, <out>/run.json   the published run (written only at its end, run.json last)
    <out>/.lock                         held (flock) by the process writing this folder; names it
    <out>/.staging/                     the run in progress: metrics.csv and run.json (status running)
    <out>/.staging/.reserve             space held back while the run writes, freed to record a failure
    <out>/checkpoints/                  resume points (ferret/checkpoint.py), outside the staging
                                        folder so that a killed run resumes from them
    <out>/replaced/<UTC time>/          a finished run that ``--force`` moved aside
    <out>/traceback.log                 the traceback of the last failure

Rules (README, "Outputs"):

* A second process on the same folder stops at once, naming the holder (flock is released by the
  kernel when the holder dies, even by SIGKILL, so a stale lock never blocks a rerun).
* A published run with status ok or diverged is *finished*: the same resolved config is a no-op
  ("already done"), another config is refused unless ``force`` (which moves the finished run to
  ``replaced/`` when the new one publishes, so a failed forced run leaves it in place).
* The rows and the record are built in ``.staging`` and moved into ``<out>`` with ``rename(2)``,
  metrics.csv first, run.json last: a reader (collect, Snakemake) that sees run.json sees the
  complete run; a crash between the two renames is completed by the next start.
* A failure or an interruption publishes run.json with its status (and the rows so far) only when
  no finished run is in the folder; a finished run is never overwritten by an unfinished one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from ferret.atomic import fsync_dir

FINISHED = ("ok", "diverged")
OUTPUTS = ("examples.csv", "metrics.csv", "run.json")  # published in this order, run.json last
LOCK, STAGING, REPLACED = ".lock", ".staging", "replaced"
# Config keys that cannot change a run's numbers: a finished run under other values is still "done".
# Bytes held in .staging/.reserve: a disk that the run fills still has room for run.json and the
# traceback of the failure (release_reserve), so a full disk ends with status 'failed', not 'running'.
RESERVE_BYTES = 512 * 1024
# `untuned` only says where round 0 comes from; a run uses it only when it is bit-for-bit its own.
IGNORED_KEYS = frozenset({"threads", "checkpoint_every", "wandb_mode", "wandb_project", "wandb_entity", "untuned"})


class OutDirError(RuntimeError):
    """The run folder cannot be used (not writable, busy, or holding another finished run)."""


class AlreadyDone(Exception):
    """The folder holds a finished run of this config."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record.get("status"))
        self.record = record


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in IGNORED_KEYS}


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class RunFolder:
    """An exclusively held run folder. Use as a context manager; the lock is released on exit."""

    def __init__(self, out: Path, config: dict[str, Any], *, force: bool = False) -> None:
        self.out, self.config, self.force = out, config, force
        self.staging = out / STAGING
        self._fd: int | None = None

    # -- acquiring -----------------------------------------------------------------------------------
    def __enter__(self) -> RunFolder:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock()
            self.staging.mkdir(exist_ok=True)
            with open(self.staging / ".reserve", "wb") as f:  # also the probe: writable, with room
                f.write(b"\0" * RESERVE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        except OutDirError:
            self.release()
            raise
        except OSError as e:
            self.release()
            raise OutDirError(f"--out {self.out}: not a writable folder ({e.strerror or e})") from None
        try:
            self._complete_publish()
            self._check_finished()
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _lock(self) -> None:
        path = self.out / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise OutDirError(f"--out {self.out} is in use by {holder}") from None
            # The holder before us may have unlinked the file after we opened it: retry on the new one.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release_reserve(self) -> None:
        """Free the space held back at the start, for the writes that record how the run ended."""
        (self.staging / ".reserve").unlink(missing_ok=True)

    def release(self) -> None:
        if self._fd is not None:
            self.release_reserve()
            (self.out / LOCK).unlink(missing_ok=True)  # while still held, so no one locks a dead file
            os.close(self._fd)
            self._fd = None

    # -- the published run ---------------------------------------------------------------------------
    def published(self) -> dict[str, Any] | None:
        return read_record(self.out / "run.json")

    def _complete_publish(self) -> None:
        """Finish a publish that a crash cut between its two renames."""
        staged = read_record(self.staging / "run.json")
        if (staged and staged.get("status") in FINISHED and not (self.staging / "metrics.csv").exists()
                and (self.out / "metrics.csv").exists()):
            os.replace(self.staging / "run.json", self.out / "run.json")

    def _check_finished(self) -> None:
        record = self.published()
        if not record or record.get("status") not in FINISHED:
            return
        if comparable(record.get("config", {})) == comparable(self.config):
            raise AlreadyDone(record)
        if not self.force:
            old, new = comparable(record.get("config", {})), comparable(self.config)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise OutDirError(f"--out {self.out} holds a finished run of another config "
                              f"(differs in {', '.join(changed)}); pass --force to move it aside "
                              f"to {self.out / REPLACED}/ and run")

    def publish(self, status: str) -> None:
        """Move the staged run into the folder. An unfinished status never replaces a finished run."""
        current = self.published()
        if current and current.get("status") in FINISHED:
            if status not in FINISHED:
                return  # the record stays in .staging; the finished run stays visible
            aside = self.out / REPLACED / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            aside.mkdir(parents=True, exist_ok=True)
            for name in OUTPUTS:
                if (self.out / name).exists():
                    os.replace(self.out / name, aside / name)
        staged_csv = self.staging / "metrics.csv"
        if not staged_csv.exists():  # failed before round 0: the header alone, so the outputs exist
            from ferret.csv_sink import CsvSink

            CsvSink(staged_csv).write()
        if (self.staging / "examples.csv").exists():  # per-example scores; absent before round 0
            os.replace(self.staging / "examples.csv", self.out / "examples.csv")
        os.replace(staged_csv, self.out / "metrics.csv")
        os.replace(self.staging / "run.json", self.out / "run.json")
        fsync_dir(self.out)
        if status in FINISHED:
            shutil.rmtree(self.staging, ignore_errors=True)


