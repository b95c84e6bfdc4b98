"""Gather every run's metrics.csv into one long table, results/all_runs.csv.

Each row is one round of one run, with the run's grid values (experiment, method, model, data
set, num_clients, K, seed, ...) and its status from run.json. A run folder without a readable
run.json, or whose status is neither ``ok``, ``diverged`` nor ``failed``, is reported and skipped,
so a run that crashed mid-write or was interrupted can never pass for a finished one; so is a run
whose metrics.csv or examples.csv no longer matches the checksums in its run.json (tampered). A failed run
keeps the rows it finished (one identity row when it finished none) with status ``failed``, so the
tables can mark it as they mark diverged runs.

Per-example scores (each run's examples.csv, see ferret/csv_sink.py EXAMPLE_COLUMNS) go the same
way into results/all_examples.csv, with the same grid values, cell for cell (prompt id, prediction
and reference texts, every per-example metric); only runs that finished (ok or diverged)
contribute, and a run without examples.csv (made before it existed) contributes none.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ferret.atomic import atomic_write_text
from ferret.csv_sink import EXAMPLE_COLUMNS
from ferret.outdir import tampered

GRID_COLUMNS = ["experiment", "method", "model", "dataset", "num_clients", "participation", "K", "seed",
                "rounds", "local_steps", "batch_size", "lr", "slr", "dtype", "precision"]


def _record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"status", "config"} <= set(record) else None


def _tampered(folder: Path, record: dict) -> bool:
    """Report (and so skip) a run whose published CSVs differ from the checksums in its run.json."""
    bad = tampered(folder, record)
    if bad:
        print(f"collect: skipping {folder}: TAMPERED: {', '.join(bad)} no longer match the checksums in "
              "its run.json (edited or corrupted after the run)", file=sys.stderr)
    return bool(bad)


def _run_frame(folder: Path) -> pd.DataFrame | None:
    try:
        record = json.loads((folder / "run.json").read_text())
        status = record["status"]
        config = record["config"]
    except (OSError, ValueError, KeyError) as e:
        print(f"collect: skipping {folder}: no valid run.json ({e})", file=sys.stderr)
        return None
    if status not in ("ok", "diverged", "failed"):
        print(f"collect: skipping {folder}: status {status}", file=sys.stderr)
        return None
    if _tampered(folder, record):
        return None
    try:
        frame = pd.read_csv(folder / "metrics.csv")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        print(f"collect: skipping {folder}: unreadable metrics.csv ({e})", file=sys.stderr)
        return None
    if frame.empty and status == "failed":
        frame = pd.DataFrame([{"run_id": record.get("run_id"), "method": config.get("method")}],
                             columns=frame.columns)
    grid = {k: config.get(k) for k in GRID_COLUMNS if k != "method"}
    frame = frame.assign(**grid, status=status)
    return frame


def collect(run_dirs: Iterable[Path]) -> pd.DataFrame:
    frames = [f for f in (_run_frame(Path(d)) for d in run_dirs) if f is not None]
    if not frames:
        raise ValueError("collect: no valid runs found")
    df = pd.concat(frames, ignore_index=True)
    first = ["run_id", *[c for c in GRID_COLUMNS if c != "run_id"], "status"]
    return df[first + [c for c in df.columns if c not in first]]


def write_all_runs(run_dirs: Iterable[Path], out: Path) -> pd.DataFrame:
    df = collect(run_dirs)
    atomic_write_text(out, df.to_csv(index=False))
    return df


def collect_examples(run_dirs: Iterable[Path]) -> pd.DataFrame:
    """Every finished run's per-example rows with its grid values and status (maybe empty)."""
    first = ["run_id", *[c for c in GRID_COLUMNS if c != "run_id"], "status"]
    frames = []
    for folder in map(Path, run_dirs):
        record = _record(folder)
        if record is None or record["status"] not in ("ok", "diverged") or not (folder / "examples.csv").is_file():
            continue
        if tampered(folder, record):  # reported once, by collect()
            continue
        try:
            # Verbatim strings: texts stay texts ("NA", "None" or "" are predictions too) and
            # scores keep every digit, so all_examples.csv rescores as the run folder does.
            frame = pd.read_csv(folder / "examples.csv", dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            print(f"collect: skipping {folder}/examples.csv: unreadable ({e})", file=sys.stderr)
            continue
        config = record["config"]
        frames.append(frame.assign(**{k: config.get(k) for k in GRID_COLUMNS if k != "method"},
                                   status=record["status"]))
    if not frames:
        return pd.DataFrame(columns=[*first, *[c for c in EXAMPLE_COLUMNS if c not in first]])
    df = pd.concat(frames, ignore_index=True)
    return df[first + [c for c in df.columns if c not in first]]


def write_all_examples(run_dirs: Iterable[Path], out: Path) -> pd.DataFrame:
    df = collect_examples(run_dirs)
    atomic_write_text(out, df.to_csv(index=False))
    return df
