"""Read raw records from a local JSON / JSON-lines file or a Hugging Face dataset id.

Every loader of a real data set goes through here, so they all fail the same way: one line that
names the data set, the file and the line (JSON lines) or index (a JSON list) of a bad record.

A ``source`` is a local path when it exists, or when it looks like one (starts with ``/``, ``.``
or ``~``, has more than one ``/``, or ends in ``.json``/``.jsonl``), so a mistyped path is
reported as missing instead of being sent to the hub. Anything else of the form ``org/name`` is
a Hugging Face dataset id, loaded with the optional ``datasets`` package (imported only then);
a bare name without an organisation is taken as a local path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ferret.data.types import DataError

_SUFFIXES = (".json", ".jsonl")


def expand(source: str) -> str:
    """``~`` and ``$VARS`` expanded, so configs can point at e.g. ``$FERRET_SHARED/data/gsm8k``."""
    return os.path.expandvars(os.path.expanduser(source))


def is_local(source: str) -> bool:
    """True when ``source`` names (or is meant to name) a local file or folder."""
    return (os.path.exists(source) or source.startswith(("/", ".", "~")) or source.count("/") != 1
            or source.endswith(_SUFFIXES))


def require_path(dataset: str, source: str, what: str = "data path") -> Path:
    """The existing local path ``source``, else a DataError naming it."""
    if not source:
        raise DataError(f"{dataset}: data_path is empty; set it to a local path or a Hugging Face dataset id")
    path = Path(source)
    if not path.exists():
        raise DataError(f"{dataset}: {what} not found: {source}")
    return path


def read_json(dataset: str, path: Path) -> Any:
    """The parsed JSON of one file; an unreadable or malformed file is a one-line DataError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{dataset}: cannot read {path}: {str(e).splitlines()[0]}") from None


def read_json_records(dataset: str, path: Path) -> list[dict[str, Any]]:
    """Records of a JSON list (``.json``) or a JSON-lines file (anything else), each a mapping."""
    if path.suffix == ".json":
        data = read_json(dataset, path)
        if not isinstance(data, list):
            raise DataError(f"{dataset}: {path} must hold a JSON list of records, got {type(data).__name__}")
        for i, rec in enumerate(data):
            if not isinstance(rec, dict):
                raise DataError(f"{dataset}: {path} record {i}: expected an object, got {type(rec).__name__}")
        return data
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{dataset}: cannot read {path}: {str(e).splitlines()[0]}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{dataset}: {path} line {n}: malformed JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{dataset}: {path} line {n}: expected an object, got {type(rec).__name__}")
        records.append(rec)
    return records


def check_fields(dataset: str, records: Iterable[dict[str, Any]], fields: tuple[str, ...],
                 origin: Path | str, line_numbers: list[int] | None = None) -> None:
    """Every record holds every field as a string (None is not a string); else name the first bad one."""
    for i, rec in enumerate(records):
        for name in fields:
            if not isinstance(rec.get(name), str):
                problem = "missing field" if name not in rec else f"field is {type(rec[name]).__name__}, not text"
                at = f"line {line_numbers[i]}" if line_numbers else f"record {i}"
                raise DataError(f"{dataset}: {origin} {at}: {problem} '{name}'")


def read_local(dataset: str, path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Records of one local file with ``fields`` checked; errors name the line (JSON lines) or index."""
    records = read_json_records(dataset, path)
    # Blank lines are skipped, so keep each record's real line number for the error message.
    numbers = None
    if path.suffix != ".json":
        numbers = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if line.strip()]
    check_fields(dataset, records, fields, path, numbers)
    if not records:
        raise DataError(f"{dataset}: {path} holds no records")
    return records


def read_hub(dataset: str, dataset_id: str, split: str, fields: tuple[str, ...],
             config_name: str | None = None) -> list[dict[str, Any]]:
    """Records of one split of a Hugging Face dataset (needs the ``datasets`` package and the hub)."""
    try:
        import datasets  # optional: only hub ids need it
    except ImportError:
        raise DataError(f"{dataset}: reading the Hugging Face dataset '{dataset_id}' needs the `datasets` "
                        "package (pip install datasets), or give a local file") from None
    try:
        ds = datasets.load_dataset(dataset_id, config_name, split=split)
    except Exception as e:  # the hub raises many types; all mean "cannot load"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{dataset}: cannot load Hugging Face dataset '{dataset_id}' split '{split}': "
                        f"{first}") from None
    records = [dict(r) for r in ds]
    check_fields(dataset, records, fields, f"{dataset_id}[{split}]")
    if not records:
        raise DataError(f"{dataset}: Hugging Face dataset '{dataset_id}' split '{split}' holds no records")
    return records
