"""Atomic file writes: a crash never leaves a half-written CSV or JSON behind.

Every file is written to a temporary file in the same folder and renamed over the target with
``os.replace``, so a reader sees the previous complete version or the new one. A killed write
leaves only its hidden temporary, which :func:`remove_stale_temps` deletes on the next start.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ferret.redaction import redact

__all__ = ["atomic_write_text", "fsync_dir", "remove_stale_temps", "write_json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; a result file gets the mode a plain open() would give it (0644 under umask 022).
_FILE_MODE = 0o666 & ~_umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to path via a temporary sibling and rename (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, so the rename outlives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(folder: Path, names: Iterable[str]) -> None:
    """Delete the temporary files that a killed :func:`atomic_write_text` of these names left."""
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Mapping[str, Any], secrets: Sequence[str] = (),
               verbatim: Collection[str] = ()) -> None:
    """Atomic JSON with every value in ``secrets`` redacted (see :func:`redact`), except under the
    top-level keys ``verbatim`` (a run's recorded config stays exactly as given)."""
    # Values, before JSON escapes them; objects that default=str renders are redacted as text.
    shown = {k: v if k in verbatim else redact(_plain(v), secrets) for k, v in data.items()}
    atomic_write_text(path, json.dumps(shown, indent=2, sort_keys=False, default=str) + "\n")


def _plain(value: Any) -> Any:
    """``value`` with every object JSON cannot hold as its str(), so that redaction sees it."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (checksums of published runs,
    checkpoints and the embedded model file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
