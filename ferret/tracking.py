"""Where a run's numbers go: CSV (one row per round), run.json, W&B, and a console progress bar.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so
a crash never leaves a half-written CSV or JSON behind: a reader sees the previous complete
version or the new one.

Secrets: run.json and the W&B config pass through :func:`redact`, which replaces every value of
the given secrets (the CLI collects them with :func:`secret_values` from the secret-looking
environment variables, ``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``: ferret/host.py);
nothing here reads or records the environment itself.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# The per-round columns, in order (empty where not measured that round).
COLUMNS = [
    "run_id", "method", "round", "clients", "train_loss", "eval_loss", "rouge_l", "accuracy",
    "uplink_bytes", "downlink_bytes", "uplink_bytes_per_client", "downlink_bytes_per_client",
    "cum_bytes", "t_local_s", "t_encode_s", "t_aggregate_s", "t_eval_s", "t_round_s", "peak_mem_mb",
]
# examples.csv: one row per (evaluated round, eval example); `example` is the index in the eval
# set, which is fixed by the data (eval_seed), so rows of different runs pair one to one.
EXAMPLE_COLUMNS = ["run_id", "method", "round", "example", "task", "eval_loss", "rouge_l"]


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


def remove_stale_temps(folder: Path, names: Iterable[str]) -> None:
    """Delete the temporary files that a killed :func:`atomic_write_text` of these names left."""
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


class CsvSink:
    """metrics.csv with one row per round (or examples.csv with ``columns=EXAMPLE_COLUMNS``); the
    whole file is rewritten atomically each round. ``rows`` (a resumed run's rows so far) are
    written at once."""

    def __init__(self, path: Path, rows: Iterable[Mapping[str, Any]] = (), columns: list[str] | None = None) -> None:
        self.path = path
        self.columns = COLUMNS if columns is None else columns
        self.rows: list[dict[str, Any]] = []
        for row in rows:
            self._add(row)
        if self.rows:
            self.write()

    def _add(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"unknown {self.path.name} columns: {sorted(unknown)}")
        self.rows.append({c: _cell(row.get(c)) for c in self.columns})

    def log(self, row: Mapping[str, Any]) -> None:
        self._add(row)
        self.write()

    def log_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Several rows in one rewrite (an evaluation's per-example rows)."""
        for row in rows:
            self._add(row)
        self.write()

    def write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def write_json(path: Path, data: Mapping[str, Any], secrets: Sequence[str] = ()) -> None:
    """Atomic JSON with every value in ``secrets`` redacted (see :func:`redact`)."""
    # Values first (a secret JSON would escape), then the text (objects that default=str renders).
    text = json.dumps(redact(data, secrets), indent=2, sort_keys=False, default=str)
    atomic_write_text(path, redact(text, secrets) + "\n")


_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_SECRET_LEN = 8  # shorter values ("1", "true") would redact innocent text


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of the secret-looking variables of ``env`` (WANDB_API_KEY, HF_TOKEN, ...), longest first."""
    return sorted({v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN},
                  key=len, reverse=True)


def redact(data: Any, secrets: Sequence[str]) -> Any:
    """A copy of ``data`` (nested dicts/lists/strings) with every value in ``secrets`` replaced by '***'."""
    secrets = sorted(secrets, key=len, reverse=True)  # a secret containing another is replaced whole
    if not secrets:
        return data

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, "***")
            return value
        if isinstance(value, Mapping):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return value

    return walk(data)


class Progress:
    """A tqdm bar over rounds showing the latest losses and bytes (silent if tqdm is absent)."""

    def __init__(self, total: int, desc: str, initial: int = 0) -> None:
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="round", dynamic_ncols=True)
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


def resolve_wandb_mode(configured: str, env: Mapping[str, str]) -> str:
    """online / offline / disabled. 'auto': WANDB_MODE of ``env`` if set, else online when an API key
    is configured (WANDB_API_KEY or a netrc entry), else offline (no network needed)."""
    if configured != "auto":
        return configured
    mode = env.get("WANDB_MODE", "").strip().lower()
    if mode:
        return {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if env.get("WANDB_API_KEY"):
        return "online"
    netrc = env.get("NETRC") or (str(Path(env["HOME"]) / ".netrc") if env.get("HOME") else "")
    if not netrc:
        return "offline"
    try:
        if "api.wandb.ai" in Path(netrc).read_text():
            return "online"
    except OSError:
        pass
    return "offline"


DEFAULT_WANDB_PROJECT = "ferret-bench"  # where runs log when neither the config nor the host names one

# The x axes of the W&B charts: the round, the bytes communicated so far, and the wall-clock
# seconds of the rounds so far (elapsed_s: the sum of t_round_s, continued across a resume).
X_AXES = ("round", "cum_bytes", "elapsed_s")


def _seconds(value: Any) -> float:
    """A t_round_s cell as seconds (0 where the round has none, e.g. round 0's evaluation-only row)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class WandbSink:
    """Mirror of the per-round rows in Weights & Biases. Never blocks or fails the run: any W&B
    error (no package, no network, no key) prints one warning and turns the sink off."""

    INIT_TIMEOUT_S = 10

    def __init__(self, *, mode: str, project: str, entity: str, group: str, job_type: str, name: str,
                 config: Mapping[str, Any], folder: Path, run_key: str | None = None,
                 rows: Iterable[Mapping[str, Any]] = (), secrets: Sequence[str] = ()) -> None:
        """``project``/``entity``: resolved by the caller (ferret/host.py; empty: ferret-bench and the
        key's default entity); ``run_key``: a W&B run id to continue (a resumed run keeps one W&B run); ``rows``: the
        rows a resumed run logged before, so that its wall-clock axis continues from their total;
        ``secrets``: values redacted from the config and the warnings."""
        self.run = None
        self.secrets = tuple(secrets)
        self.elapsed_s = sum(_seconds(row.get("t_round_s")) for row in rows)
        if mode == "disabled":
            return
        try:
            import wandb

            folder.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=project or DEFAULT_WANDB_PROJECT, entity=entity or None, group=group, job_type=job_type,
                name=name, config=redact(dict(config), self.secrets), dir=str(folder), mode=mode, reinit="finish_previous",
                id=run_key, resume="allow" if run_key else None,
                settings=wandb.Settings(init_timeout=self.INIT_TIMEOUT_S, console="off", silent=True))
            self._define_axes()
        except Exception as e:  # noqa: BLE001 - W&B must never fail a run
            self._off(e)

    def _define_axes(self) -> None:
        """Charts a user opens plot against the round; cumulative bytes and wall-clock seconds are
        offered as alternative x axes (W&B's default, _step, means nothing to a reader)."""
        for axis in X_AXES:
            self.run.define_metric(axis)
        self.run.define_metric("*", step_metric="round")

    def _off(self, error: BaseException) -> None:
        print(redact(f"ferret: W&B logging off for this run: {type(error).__name__}: "
                     f"{str(error).splitlines()[0] if str(error) else ''}", self.secrets), file=sys.stderr)
        self.run = None

    def log(self, row: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.elapsed_s += _seconds(row.get("t_round_s"))
            numeric = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.run.log({**numeric, "round": int(row["round"]), "elapsed_s": self.elapsed_s},
                         step=int(row["round"]))
        except Exception as e:  # noqa: BLE001
            self._off(e)

    def finish(self, summary: Mapping[str, Any], status: str) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update({**{k: v for k, v in summary.items() if v is not None}, "status": status})
            self.run.finish(exit_code=0 if status == "ok" else 1)
        except Exception as e:  # noqa: BLE001
            self._off(e)


def log_report(files: list[Path], *, kind: str, mode: str, experiment: str, folder: Path,
               project: str = "", entity: str = "", secrets: Sequence[str] = ()) -> None:
    """Log report files to W&B (one run of job_type 'report' per kind): every file in an artifact,
    PNG figures also as images. ``mode`` is resolved (online, offline or disabled). Like WandbSink,
    it warns and carries on when W&B is unavailable."""
    sink = WandbSink(mode=mode, project=project, entity=entity, group=experiment,
                     job_type="report", name=f"{experiment}-{kind}", config={"experiment": experiment},
                     folder=folder, secrets=secrets)
    if sink.run is None:
        return
    try:
        import wandb

        artifact = wandb.Artifact(f"{experiment}-{kind}", type="report")
        for path in files:
            artifact.add_file(str(path))
        images = {path.stem: wandb.Image(str(path)) for path in files if path.suffix == ".png"}
        if images:
            sink.run.log(images)
        sink.run.log_artifact(artifact)
    except Exception as e:  # noqa: BLE001 - W&B must never fail a report
        sink._off(e)
    sink.finish({}, "ok")
