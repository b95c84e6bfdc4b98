"""Checkpoints between rounds, so that a killed, pre-empted or crashed run resumes where it stopped.

Layout (``<out>`` is the run folder that ``ferret run --out`` names)::

    <out>/checkpoints/round-000003/state.safetensors   the method's tensors ("method/...") and the
                                                       torch RNG states ("rng/...")
    <out>/checkpoints/round-000003/meta.json           round, config, metric rows so far, the
                                                       method's JSON values, Python/NumPy RNG states

Choices:

* Only safetensors and JSON: resuming unpickles nothing (no ``torch.load``).
* Atomic: a checkpoint is written into a hidden temporary folder next to the others, every file is
  fsynced, and one ``rename(2)`` publishes it; a kill mid-write leaves only the temporary folder,
  which is ignored and removed by the next start.
* The latest *valid* checkpoint wins: meta.json must parse and name its round, and the state file
  must have the size meta.json recorded and a readable header. A torn or foreign folder is skipped
  with a message, and the one before it is used.
* A checkpoint is resumed only by the same config (keys that cannot change the numbers, such as
  ``threads`` or the W&B settings, aside); a run with another config starts afresh and deletes the
  stale checkpoints, so they can never be mixed with its rounds.
* The folder is not a Snakemake output (only metrics.csv and run.json are), so Snakemake's
  deletion of a failed job's outputs keeps it, and the rerun resumes (workflow/rules/train.smk).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ferret.atomic import fsync_dir
from ferret.config import keys_without_effect

FORMAT = 1
FOLDER = "checkpoints"
STATE, META = "state.safetensors", "meta.json"
# Config keys that change how a run executes or logs, never its numbers: a checkpoint written under
# other values of these is still resumed.
RESUME_IGNORES = keys_without_effect()
_NAME = re.compile(r"^round-(\d{6})$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: everything needed to continue after ``round``."""

    round: int
    rows: list[dict[str, Any]]  # the metric rows of rounds 0..round, raw values
    method_state: dict[str, Any]  # Algorithm.state_dict(): tensors and JSON values
    extra: dict[str, Any] = field(default_factory=dict)  # engine bookkeeping (W&B id, resumes)
    rng: dict[str, Any] = field(default_factory=dict)  # see capture_rng


def _config_key(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESUME_IGNORES}


# -- RNG states ---------------------------------------------------------------------------------------
def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON values) of every global RNG: torch CPU and CUDA, Python, NumPy.
    Per-round streams come from ferret.seeding; these globals still drive e.g. LoRA dropout."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda.{i}"] = state
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    values = {"python": [version, list(state), gauss],
              "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    return tensors, values


def restore_rng(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng/cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, state, gauss = values["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = values["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


# -- writing ------------------------------------------------------------------------------------------


def save(out: Path, round_: int, config: dict[str, Any], rows: list[dict[str, Any]],
         method_state: dict[str, Any], extra: dict[str, Any], keep: int = 2) -> Path:
    """Publish the checkpoint of ``round_`` atomically and keep only the newest ``keep``."""
    root = out / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    tensors, rng_values = capture_rng()
    method_json: dict[str, Any] = {}
    for key, value in method_state.items():
        if isinstance(value, torch.Tensor):
            # A copy on the CPU: safetensors refuses tensors that share memory (views, histories).
            tensors[f"method/{key}"] = value.detach().to("cpu", copy=True).contiguous()
        else:
            method_json[key] = value
    final = root / f"round-{round_:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        save_file(tensors, str(tmp / STATE))
        meta = {"format": FORMAT, "round": round_, "config": config, "rows": rows, "method": method_json,
                "rng": rng_values, "extra": extra, "state_bytes": (tmp / STATE).stat().st_size}
        (tmp / META).write_text(json.dumps(meta))
        for f in (tmp / STATE, tmp / META):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # a rerun that got this far before: replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in _published(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _published(root: Path) -> list[Path]:
    """Published checkpoint folders, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


# -- reading ------------------------------------------------------------------------------------------
def _read(folder: Path) -> Checkpoint:
    """Load one checkpoint folder, or raise ValueError/OSError saying why it is not valid."""
    meta = json.loads((folder / META).read_text())
    if meta.get("format") != FORMAT or f"round-{meta['round']:06d}" != folder.name:
        raise ValueError(f"unexpected format {meta.get('format')!r} or round {meta.get('round')!r}")
    size = (folder / STATE).stat().st_size
    if size != meta["state_bytes"]:
        raise ValueError(f"{STATE} has {size} bytes, {meta['state_bytes']} expected (torn write)")
    with safe_open(str(folder / STATE), framework="pt"):
        pass  # header and offsets readable
    tensors = load_file(str(folder / STATE))
    method = {k.removeprefix("method/"): v for k, v in tensors.items() if k.startswith("method/")}
    method.update(meta["method"])
    ckpt = Checkpoint(round=meta["round"], rows=meta["rows"], method_state=method, extra=meta["extra"],
                      rng={"tensors": {k: v for k, v in tensors.items() if k.startswith("rng/")},
                           "values": meta["rng"]})
    ckpt.extra["config"] = meta["config"]
    return ckpt


def latest(out: Path, config: dict[str, Any]) -> Checkpoint | None:
    """The newest valid checkpoint of this config under ``out``, or None (a fresh start).

    Leftover temporary folders are removed; checkpoints of another config are deleted (with a
    message) so that they can never be resumed into this run."""
    root = out / FOLDER
    if not root.is_dir():
        return None
    for tmp in root.glob(".round-*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    for folder in reversed(_published(root)):
        try:
            ckpt = _read(folder)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"ferret: ignoring checkpoint {folder}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                  file=sys.stderr)
            continue
        written = _config_key(ckpt.extra.pop("config"))
        wanted = _config_key(config)
        if written != wanted:
            changed = sorted(k for k in set(written) | set(wanted) if written.get(k) != wanted.get(k))
            print(f"ferret: not resuming {folder}: written with other values of {', '.join(changed)}; "
                  "starting afresh", file=sys.stderr)
            clear(out)
            return None
        return ckpt
    return None


def clear(out: Path) -> None:
    """Delete every checkpoint of the run (after it finished, or when they belong to another config)."""
    shutil.rmtree(out / FOLDER, ignore_errors=True)
