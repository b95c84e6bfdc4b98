"""Where a run's numbers go: CSV (one row per round), run.json, W&B, and a console progress bar.

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
import sys
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


def resolve_wandb_mode(configured: str, env: Mapping[str, str] | None = None) -> str:
    """online / offline / disabled. 'auto': $WANDB_MODE if set, else online when an API key is
    configured ($WANDB_API_KEY or a netrc entry), else offline (no network needed)."""
    env = os.environ if env is None else env
    if configured != "auto":
        return configured
    mode = env.get("WANDB_MODE", "").strip().lower()
    if mode:
        return {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if env.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(env.get("NETRC", Path(env.get("HOME", "~")).expanduser() / ".netrc"))
    try:
        if "api.wandb.ai" in netrc.read_text():
            return "online"
    except OSError:
        pass
    return "offline"


class WandbSink:
    """Mirror of the per-round rows in Weights & Biases. Never blocks or fails the run: any W&B
    error (no package, no network, no key) prints one warning and turns the sink off."""

    INIT_TIMEOUT_S = 10

    def __init__(self, *, mode: str, project: str, entity: str, group: str, job_type: str, name: str,
                 config: Mapping[str, Any], folder: Path) -> None:
        self.run = None
        if mode == "disabled":
            return
        try:
            import wandb

            folder.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=project or os.environ.get("WANDB_PROJECT") or "ferret-bench",
                entity=entity or os.environ.get("WANDB_ENTITY") or None, group=group, job_type=job_type,
                name=name, config=dict(config), dir=str(folder), mode=mode, reinit="finish_previous",
                settings=wandb.Settings(init_timeout=self.INIT_TIMEOUT_S, console="off", silent=True))
        except Exception as e:  # noqa: BLE001 - W&B must never fail a run
            self._off(e)

    def _off(self, error: BaseException) -> None:
        print(f"ferret: W&B logging off for this run: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
              file=sys.stderr)
        self.run = None

    def log(self, row: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        try:
            numeric = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "round"}
            self.run.log(numeric, step=int(row["round"]))
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
               project: str = "", entity: str = "") -> None:
    """Log report files to W&B (one run of job_type 'report' per kind): every file in an artifact,
    PNG figures also as images. Like WandbSink, it warns and carries on when W&B is unavailable."""
    sink = WandbSink(mode=resolve_wandb_mode(mode), project=project, entity=entity, group=experiment,
                     job_type="report", name=f"{experiment}-{kind}", config={"experiment": experiment},
                     folder=folder)
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
