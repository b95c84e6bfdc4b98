"""Fault injection for the subprocess tests (tests/test_faults.py), from outside the shipped code.

A test puts this folder first on PYTHONPATH and sets FERRET_FAULT; every `python -m ferret run`
started below it (directly, or as a Snakemake job) then patches ferret at start-up:

* ``pause@round:R``      after round R's checkpoint is published (checkpoint.save returns)
* ``pause@checkpoint:R`` inside round R's checkpoint: the state file written, meta.json not yet
* ``pause@write:NAME#N`` inside the N-th write of a file NAME: the real writer has written half the
                         text to whatever file it opened (the temporary of an atomic write)
* ``fill@round:R``       after round R's checkpoint, fill the file system of the run folder
* ``nan@METHOD:R``       METHOD's local training returns a NaN loss in round R
* ``raise@METHOD:R``     METHOD's local training raises RuntimeError in round R (a failed run)
* ``pause@prepare``      while the run prepares its model and data (the folder is taken, round 0 not begun)

Several faults are separated by commas.

A pause prints ``ferret-test-pause pid=<pid> at=<point>`` to stderr and sleeps, so that the test
kills the process at exactly that point. Other processes (Snakemake itself) are left alone.
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

SPEC = os.environ.get("FERRET_FAULT", "")


def _is_ferret_run() -> bool:
    argv = getattr(sys, "orig_argv", sys.argv)
    return "run" in argv and any(a == "ferret" or a.endswith("/ferret") for a in argv)


def _pause(point: str) -> None:
    print(f"ferret-test-pause pid={os.getpid()} at={point}", file=sys.stderr, flush=True)
    time.sleep(300)


class _HalfWriter:
    """A file opened for writing whose write stops halfway and pauses: what a kill mid-write leaves."""

    def __init__(self, file, point: str) -> None:
        self._file, self._point = file, point

    def write(self, text):
        self._file.write(text[: len(text) // 2])
        self._file.flush()
        os.fsync(self._file.fileno())
        _pause(self._point)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)

    def __getattr__(self, attr):
        return getattr(self._file, attr)


@contextmanager
def _writes_pause_halfway(point: str):
    """Every file opened for writing meanwhile (open, Path.write_text, os.fdopen) pauses halfway."""
    real = {"open": builtins.open, "io_open": io.open, "fdopen": os.fdopen}

    def opener(real_open):
        def open_(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            return _HalfWriter(f, point) if any(c in mode for c in "wax+") else f
        return open_

    builtins.open, io.open, os.fdopen = opener(real["open"]), opener(real["io_open"]), opener(real["fdopen"])
    try:
        yield
    finally:
        builtins.open, io.open, os.fdopen = real["open"], real["io_open"], real["fdopen"]


def _fill(folder: Path) -> None:
    """Write a filler file until the file system is full."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
        try:  # the last partial block too
            while True:
                f.write(b"\0")
                f.flush()
        except OSError:
            pass


def install(spec: str) -> None:
    action, _, point = spec.partition("@")
    from ferret import atomic, checkpoint, csv_sink

    if point == "prepare":
        from ferret import preparation

        real_prepare = preparation.prepare

        def prepare(*args, **kwargs):
            _pause(point)
            return real_prepare(*args, **kwargs)

        preparation.prepare = prepare
    elif point.startswith("round:"):
        at = int(point.split(":")[1])
        real_save = checkpoint.save

        def save(out, round_, *args, **kwargs):
            path = real_save(out, round_, *args, **kwargs)
            if round_ == at:
                _pause(point) if action == "pause" else _fill(Path(out))
            return path

        checkpoint.save = save
    elif point.startswith("checkpoint:"):
        at = int(point.split(":")[1])
        real_save_file = checkpoint.save_file

        def save_file(tensors, filename, *args, **kwargs):
            real_save_file(tensors, filename, *args, **kwargs)
            if Path(filename).parent.name.startswith(f".round-{at:06d}."):
                _pause(point)

        checkpoint.save_file = save_file
    elif point.startswith("write:"):
        name, _, nth = point.removeprefix("write:").partition("#")
        real_write = atomic.atomic_write_text
        count = [0]

        def atomic_write_text(path, text):
            if Path(path).name == name:
                count[0] += 1
                if count[0] == int(nth):
                    # The real writer, stopped halfway through its file: an atomic one leaves half a
                    # temporary, one that wrote the target in place would leave it torn (and fail the test).
                    with _writes_pause_halfway(point):
                        real_write(path, text)
                    return
            real_write(path, text)

        # Each writer looks the function up in its own module: write_json (run.json) in ferret.atomic,
        # CsvTable (metrics.csv, examples.csv) in ferret.csv_sink.
        for module in (atomic, csv_sink):
            module.atomic_write_text = atomic_write_text
    elif action in ("nan", "raise"):
        method, _, at_round = point.rpartition(":")
        from ferret.algorithms import registry

        real_resolve = registry.resolve

        def resolve(name, *args, **kwargs):
            cls = real_resolve(name, *args, **kwargs)
            if name != method:
                return cls

            class NaNLoss(cls):
                def local_train(self, model, batches, client, ctx):
                    loss = super().local_train(model, batches, client, ctx)
                    if ctx.round == int(at_round) and action == "raise":
                        raise RuntimeError(f"injected failure in round {ctx.round}")
                    return float("nan") if ctx.round == int(at_round) else loss

            return NaNLoss

        registry.resolve = resolve


if SPEC and _is_ferret_run():
    for one in SPEC.split(","):
        install(one)
