"""Where a run's numbers go: CSV (one row per round), run.json, and a console progress bar.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so
a crash never leaves a half-written CSV or JSON behind: a reader sees the previous complete
version or the new one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The per-round columns, in order (empty where not measured that round).
COLUMNS = [
    "run_id", "method", "round", "clients", "train_loss", "eval_loss", "rouge_l",
    "uplink_bytes", "downlink_bytes", "uplink_bytes_per_client", "downlink_bytes_per_client",
    "cum_bytes", "t_local_s", "t_encode_s", "t_aggregate_s", "t_eval_s", "t_round_s", "peak_mem_mb",
]


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to path via a temporary sibling and rename (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


class CsvSink:
    """metrics.csv with one row per round; the whole file is rewritten atomically each round."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def log(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown metrics columns: {sorted(unknown)}")
        self.rows.append({c: _cell(row.get(c)) for c in COLUMNS})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


class Progress:
    """A tqdm bar over rounds showing the latest losses and bytes (silent if tqdm is absent)."""

    def __init__(self, total: int, desc: str) -> None:
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="round", dynamic_ncols=True)
        except ImportError:  # pragma: no cover
            self.bar = None

    def update(self, row: Mapping[str, Any]) -> None:
        if self.bar is None:
            return
        shown = {k: row[k] for k in ("train_loss", "eval_loss", "rouge_l") if row.get(k) not in (None, "")}
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()} | {"up_B": row.get("uplink_bytes_per_client")})
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
