"""Fault injection for the subprocess tests (tests/test_faults.py), from outside the shipped code.

A test puts this folder first on PYTHONPATH and sets FERRET_FAULT; every `python -m ferret run`
started below it (directly, or as a Snakemake job) then patches ferret at start-up:

* ``pause@round:R``      after round R's checkpoint is published (checkpoint.save returns)
* ``pause@checkpoint:R`` inside round R's checkpoint: the state file written, meta.json not yet
* ``pause@write:NAME#N`` inside the N-th atomic write of a file NAME: half of it in the temporary
* ``fill@round:R``       after round R's checkpoint, fill the file system of the run folder
* ``nan@METHOD:R``       METHOD's local training returns a NaN loss in round R
* ``raise@METHOD:R``     METHOD's local training raises RuntimeError in round R (a failed run)

Several faults are separated by commas.

A pause prints ``ferret-test-pause pid=<pid> at=<point>`` to stderr and sleeps, so that the test
kills the process at exactly that point. Other processes (Snakemake itself) are left alone.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

SPEC = os.environ.get("FERRET_FAULT", "")


def _is_ferret_run() -> bool:
    argv = getattr(sys, "orig_argv", sys.argv)
    return "run" in argv and any(a == "ferret" or a.endswith("/ferret") for a in argv)


def _pause(point: str) -> None:
    print(f"ferret-test-pause pid={os.getpid()} at={point}", file=sys.stderr, flush=True)
    time.sleep(300)


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

    if point.startswith("round:"):
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
                if count[0] == int(nth):  # what the real writer leaves at this instant: half a temporary
                    (Path(path).parent / f".{name}.killed.tmp").write_text(text[: len(text) // 2])
                    _pause(point)
            real_write(path, text)

        # Each writer looks the function up in its own module: write_json (run.json) in ferret.atomic,
        # CsvSink (metrics.csv, examples.csv) in ferret.csv_sink.
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
