"""The ``--out`` protocol: one run folder, one writer, and a result that appears only when complete.

Layout of a run folder ``<out>``::

    <out>/metrics.csv, <out>/run.json   the published run (written only at its end, run.json last)
    <out>/.lock                         held (flock) by the process writing this folder; names it
    <out>/.staging/                     the run in progress: metrics.csv and run.json (status running)
    <out>/.staging/.reserve             space held back while the run writes, freed to record a failure
    <out>/checkpoints/                  resume points (ferret/checkpoint.py), outside the staging
                                        folder so that a killed run resumes from them
    <out>/replaced/<UTC time>/          a finished run that ``--force`` moved aside
    <out>/traceback.log                 the traceback of the last failure (removed by a later ok run)
    <out>/wandb/                        W&B's offline files, when W&B logs the run

Only an empty (or new) folder, or one holding nothing but the names above, is taken: another tool's
``metrics.csv`` or ``run.json`` is never overwritten (:func:`check_owned`). run.json records the
SHA-256 of the published metrics.csv and examples.csv (``checksums``): a finished run whose files
no longer match is reported as tampered, never taken as "already done" (:func:`tampered`).

Rules (docs/outputs.md):

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

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from ferret.atomic import file_sha256, fsync_dir
from ferret.config import keys_without_effect

FINISHED = ("ok", "diverged")
OUTPUTS = ("examples.csv", "metrics.csv", "run.json")  # published in this order, run.json last
LOCK, STAGING, REPLACED = ".lock", ".staging", "replaced"
# Every name ferret (or W&B, with dir=<out>) writes into a run folder; anything else is not ours.
OWN_NAMES = frozenset({*OUTPUTS, LOCK, STAGING, REPLACED, "checkpoints", "traceback.log", "wandb"})
# The temporary of an atomic write of one of them that a kill left (ferret/atomic.py names them so).
_OWN_TEMP = re.compile(r"\.(?:examples\.csv|metrics\.csv|run\.json|traceback\.log)\..+\.tmp")
# Bytes held in .staging/.reserve: a disk that the run fills still has room for run.json and the
# traceback of the failure (release_reserve), so a full disk ends with status 'failed', not 'running'.
RESERVE_BYTES = 512 * 1024
# Config keys that cannot change a run's numbers: a finished run under other values is still "done".
IGNORED_KEYS = keys_without_effect()


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


def _is_ferret_record(path: Path) -> bool:
    record = read_record(path)
    return record is not None and {"run_id", "status", "config"} <= set(record)


def check_owned(out: Path) -> None:
    """Refuse a folder that is not ferret's: one holding other names, a run.json that is no run
    record, or published CSVs without their run.json (and no run of ours in progress)."""
    if not out.is_dir():
        return
    names = {p.name for p in out.iterdir()}
    foreign = sorted(n for n in names - OWN_NAMES if not _OWN_TEMP.fullmatch(n))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutDirError(f"--out {out}: not a ferret run folder (holds {shown}); use an empty or new folder")
    if "run.json" in names and not _is_ferret_record(out / "run.json"):
        raise OutDirError(f"--out {out}: not a ferret run folder (its run.json is no run record); "
                          "use an empty or new folder")
    in_progress = names & {STAGING, "checkpoints"}
    if names & {"metrics.csv", "examples.csv"} and "run.json" not in names and not in_progress:
        raise OutDirError(f"--out {out}: not a ferret run folder (a metrics.csv or examples.csv without "
                          "run.json); use an empty or new folder")


def checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of the run's CSVs in ``folder`` (those that exist), as run.json records them."""
    return {name: file_sha256(folder / name) for name in ("metrics.csv", "examples.csv") if (folder / name).is_file()}


def tampered(folder: Path, record: dict[str, Any]) -> list[str]:
    """The published files of ``folder`` that differ from the checksums in its run.json
    (a missing file included); empty for a record without checksums (made before they existed)."""
    recorded = record.get("checksums")
    if not isinstance(recorded, dict):
        return []
    bad = []
    for name, digest in recorded.items():
        try:
            if file_sha256(folder / str(name)) != digest:
                bad.append(str(name))
        except OSError:
            bad.append(str(name))
    return sorted(bad)


class RunFolder:
    """An exclusively held run folder. Use as a context manager; the lock is released on exit."""

    def __init__(self, out: Path, config: dict[str, Any], *, force: bool = False) -> None:
        self.out, self.config, self.force = out, config, force
        self.staging = out / STAGING
        self._fd: int | None = None
        self._created: list[Path] = []  # folders this process made, removed again by discard()

    # -- acquiring -----------------------------------------------------------------------------------
    def __enter__(self) -> RunFolder:
        try:
            check_owned(self.out)
            if not self.out.exists():
                self.out.mkdir(parents=True)
                self._created.append(self.out)
            self._lock()
            if not self.staging.exists():
                self.staging.mkdir()
                self._created.append(self.staging)
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

    def discard(self) -> None:
        """Bad input found after the folder was taken: remove what this process created (the
        staging folder, the folder itself when it was new and is empty), so nothing is left."""
        self.release()
        for folder in reversed(self._created):
            if folder == self.staging:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    folder.rmdir()

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
        bad = tampered(self.out, record)
        if bad:
            if not self.force:
                raise OutDirError(f"--out {self.out}: the finished run's {', '.join(bad)} no longer match the "
                                  f"checksums in its run.json (edited or corrupted); pass --force to move it "
                                  f"aside to {self.out / REPLACED}/ and rerun")
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
            from ferret.csv_sink import CsvTable

            CsvTable(staged_csv).write()
        if (self.staging / "examples.csv").exists():  # per-example scores; absent before round 0
            os.replace(self.staging / "examples.csv", self.out / "examples.csv")
        os.replace(staged_csv, self.out / "metrics.csv")
        os.replace(self.staging / "run.json", self.out / "run.json")
        fsync_dir(self.out)
        if status in FINISHED:
            shutil.rmtree(self.staging, ignore_errors=True)

    def seal(self, record: dict[str, Any]) -> None:
        """Record in ``record`` the checksums of the staged CSVs it will be published with (the
        header alone when the run failed before round 0)."""
        staged_csv = self.staging / "metrics.csv"
        if not staged_csv.exists():
            from ferret.csv_sink import CsvTable

            CsvTable(staged_csv).write()
        record["checksums"] = checksums(self.staging)


