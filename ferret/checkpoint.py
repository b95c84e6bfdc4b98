"""Checkpoints between rounds, so that a killed, pre-empted or crashed run resumes where it stopped.

Layout (``<out>`` is the run folder that ``ferret run --out`` names)::

    <out>/checkpoints/round-000003/state.safetensors   the method's tensors ("method/..."), the
                                                       round records ("record/<i>/...") and the
                                                       torch RNG states ("rng/...")
    <out>/checkpoints/round-000003/meta.json           round, config, the run's state (rows so
                                                       far, ferret/run_state.py), the method's JSON
                                                       values, Python/NumPy RNG states, the state
                                                       file's SHA-256, and its own SHA-256 (of the
                                                       rest of meta.json)

Two kinds of method state (``Algorithm.replayable``, ferret/algorithms/base.py):

* Full-weight methods checkpoint their global weights (``state_dict()``). At paper scale that is
  gigabytes per checkpoint, so besides ``checkpoint_every`` rounds they honour a time cadence,
  ``checkpoint_every_s`` (:class:`Cadence`).
* Replayable methods (Ferret, FedKSeed) checkpoint their small server state, the SHA-256 of the
  starting weights and every round's record (seeds and coordinates: kilobytes per round). A resume
  rebuilds the global weights from the starting weights by re-applying every round
  (:func:`restore`), which runs the server's own update on the same inputs, so the weights are
  bit for bit those of the uninterrupted run.

Choices:

* Only safetensors and JSON: resuming unpickles nothing (no ``torch.load``).
* Atomic: a checkpoint is written into a hidden temporary folder next to the others, every file is
  fsynced, and one ``rename(2)`` publishes it; a kill mid-write leaves only the temporary folder,
  which is ignored and removed by the next start.
* The latest *valid* checkpoint wins: meta.json must parse and match its own checksum, and the
  state file must have the size and SHA-256 meta.json recorded. A torn or corrupted checkpoint is
  skipped with a warning naming it, and the one before it is used.
* A checkpoint is resumed only by the same config (keys that cannot change the numbers, such as
  ``threads`` or the W&B settings, aside) and, for replay, the same starting weights. Checkpoints
  of another config or other starting weights are never deleted: the run is refused (bad input),
  or with ``force`` they are moved to ``<out>/replaced/<UTC time>/checkpoints`` and it starts
  afresh. Checkpoints none of which is valid are moved there too, without refusing.
* The folder is not a Snakemake output (only metrics.csv and run.json are), so Snakemake's
  deletion of a failed job's outputs keeps it, and the rerun resumes (workflow/rules/train.smk).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ferret.atomic import file_sha256, fsync_dir
from ferret.config import keys_without_effect
from ferret.outdir import REPLACED, OutDirError
from ferret.run_state import RunState

if TYPE_CHECKING:
    from ferret.algorithms.base import Algorithm

FORMAT = 3
FOLDER = "checkpoints"
STATE, META = "state.safetensors", "meta.json"
KEEP = 2  # published checkpoints kept; one more exists while the next is written
# Config keys that change how a run executes or logs, never its numbers: a checkpoint written under
# other values of these is still resumed.
RESUME_IGNORES = keys_without_effect()
_NAME = re.compile(r"^round-(\d{6})$")
_RECORD = re.compile(r"^record/(\d+)/(.+)$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: everything needed to continue after its ``round``."""

    state: RunState  # the run's rows, records and bookkeeping after its last round
    method_state: dict[str, Any]  # Algorithm.state_dict(): tensors and JSON values
    rng: dict[str, Any] = field(default_factory=dict)  # see capture_rng
    config: dict[str, Any] = field(default_factory=dict)  # the config it was written under
    folder: Path | None = None

    @property
    def round(self) -> int:
        return self.state.last_round


def _config_key(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESUME_IGNORES}


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors (names, dtypes, shapes and bytes, in name order): the identity of
    the starting weights that a replay rebuilds from. One tensor is copied to the host at a time."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.to("cpu").contiguous().view(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _meta_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


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


# -- when -------------------------------------------------------------------------------------------
class Cadence:
    """When the engine checkpoints: after every ``checkpoint_every``-th round but the last; for a
    method whose checkpoint holds its weights, also only once ``checkpoint_every_s`` seconds
    (0 = no time condition) have passed since the last checkpoint or the start of the rounds.
    Replayable methods' checkpoints are kilobytes, so they follow the round count alone."""

    def __init__(self, every: int, every_s: float, rounds: int, replayable: bool) -> None:
        self.every, self.rounds = every, rounds
        self.every_s = 0.0 if replayable else every_s
        self.last = time.monotonic()

    def due(self, round_: int) -> bool:
        if not self.every or round_ % self.every or round_ >= self.rounds:
            return False
        return not self.every_s or time.monotonic() - self.last >= self.every_s

    def saved(self) -> None:
        self.last = time.monotonic()


# -- writing ------------------------------------------------------------------------------------------
def _split(values: Mapping[str, Any], prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Put the tensors of ``values`` into ``tensors`` under ``prefix``; return the JSON values."""
    rest: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, torch.Tensor):
            # A copy on the CPU: safetensors refuses tensors that share memory (views, histories).
            tensors[f"{prefix}{key}"] = value.detach().to("cpu", copy=True).contiguous()
        else:
            rest[key] = value
    return rest


def save(out: Path, round_: int, config: dict[str, Any], state: RunState, method_state: dict[str, Any],
         keep: int = KEEP) -> Path:
    """Publish the checkpoint of ``round_`` (the run's ``state`` and the method's, and the RNGs)
    atomically and keep only the newest ``keep``."""
    root = out / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    tensors, rng_values = capture_rng()
    method_json = _split(method_state, "method/", tensors)
    state_json = {f.name: getattr(state, f.name) for f in fields(state)}
    if state.records is not None:
        state_json["records"] = [_split(r, f"record/{i}/", tensors) for i, r in enumerate(state.records)]
    final = root / f"round-{round_:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        save_file(tensors, str(tmp / STATE))
        body = {"format": FORMAT, "round": round_, "config": config, "state": state_json, "method": method_json,
                "rng": rng_values,
                "state_bytes": (tmp / STATE).stat().st_size, "state_sha256": file_sha256(tmp / STATE)}
        (tmp / META).write_text(json.dumps({**body, "sha256": _meta_digest(body)}))
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


def disk_bytes(out: Path) -> int:
    """Bytes of the files under ``out/checkpoints``."""
    root = out / FOLDER
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0


# -- reading ------------------------------------------------------------------------------------------
def _read(folder: Path) -> Checkpoint:
    """Load one checkpoint folder, or raise ValueError/OSError saying why it is not valid."""
    meta = json.loads((folder / META).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')!r}, this version reads {FORMAT}")
    if meta.pop("sha256", None) != _meta_digest(meta):
        raise ValueError(f"{META} does not match its SHA-256 (corrupted)")
    if f"round-{meta['round']:06d}" != folder.name:
        raise ValueError(f"{META} names round {meta['round']!r}")
    size = (folder / STATE).stat().st_size
    if size != meta["state_bytes"]:
        raise ValueError(f"{STATE} has {size} bytes, {meta['state_bytes']} expected (torn write)")
    if file_sha256(folder / STATE) != meta["state_sha256"]:
        raise ValueError(f"{STATE} does not match its SHA-256 (corrupted)")
    tensors = load_file(str(folder / STATE))
    method = {k.removeprefix("method/"): v for k, v in tensors.items() if k.startswith("method/")}
    method.update(meta["method"])
    state = RunState(**meta["state"])
    if state.last_round != meta["round"]:
        raise ValueError(f"{META} holds rows up to round {state.last_round}, not {meta['round']}")
    if state.records is not None:
        for key, value in tensors.items():
            m = _RECORD.match(key)
            if m:
                state.records[int(m[1])][m[2]] = value
    return Checkpoint(state=state, method_state=method,
                      rng={"tensors": {k: v for k, v in tensors.items() if k.startswith("rng/")},
                           "values": meta["rng"]},
                      config=meta["config"], folder=folder)


def _set_aside(out: Path, why: str, force: bool) -> None:
    """Refuse (OutDirError, bad input) or, with ``force``, move ``out/checkpoints`` to
    ``out/replaced/<UTC time>/checkpoints``; never delete them."""
    if not force:
        raise OutDirError(f"--out {out} holds checkpoints of an unfinished run {why}; rerun that config to "
                          f"resume it, or pass --force to move them aside to {out / REPLACED}/ and start afresh")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = out / REPLACED / stamp / FOLDER
    n = 1
    while dest.exists():  # two set-asides within one second
        n += 1
        dest = out / REPLACED / f"{stamp}.{n}" / FOLDER
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(out / FOLDER, dest)
    fsync_dir(dest.parent)
    print(f"ferret: moved the checkpoints {why} to {dest}; starting afresh", file=sys.stderr)


def latest(out: Path, config: dict[str, Any], *, init: str | None = None, force: bool = False) -> Checkpoint | None:
    """The newest valid checkpoint of this config under ``out``, or None (a fresh start).

    Leftover temporary folders are removed; invalid checkpoints are skipped with a warning naming
    them. Checkpoints of another config, or of other starting weights (``init``: this run's
    :func:`weights_digest`, checked for checkpoints that replay), refuse the run with
    OutDirError unless ``force``, which moves them aside. Checkpoints none of which is valid are
    moved aside too (nothing can resume them), with a message."""
    root = out / FOLDER
    if not root.is_dir():
        return None
    for tmp in root.glob(".round-*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    published = _published(root)
    for folder in reversed(published):
        try:
            ckpt = _read(folder)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            print(f"ferret: warning: skipping checkpoint {folder}: "
                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}; trying the one before",
                  file=sys.stderr)
            continue
        written = _config_key(ckpt.config)
        wanted = _config_key(config)
        if written != wanted:
            changed = sorted(k for k in set(written) | set(wanted) if written.get(k) != wanted.get(k))
            _set_aside(out, f"of another config (differs in {', '.join(changed)})", force)
            return None
        if ckpt.state.records is not None and ckpt.state.init != init:
            _set_aside(out, "written from other starting weights (the model's files changed?)", force)
            return None
        return ckpt
    if published:  # nothing here can be resumed (e.g. another format): kept aside, not refused
        _set_aside(out, f"none of which is valid ({len(published)})", force=True)
    return None


def restore(ckpt: Checkpoint, algo: Algorithm) -> None:
    """Bring a freshly set-up ``algo`` and the global RNGs to the state after ``ckpt.round``:
    load the method's state, then (replayable methods) re-apply every round's record in order."""
    algo.load_state_dict(ckpt.method_state)
    for record in ckpt.state.records or ():
        algo.replay_round(record)
    restore_rng(ckpt.rng["tensors"], ckpt.rng["values"])


def clear(out: Path) -> None:
    """Delete every checkpoint of the run (after it finished: nothing is left to resume)."""
    shutil.rmtree(out / FOLDER, ignore_errors=True)
