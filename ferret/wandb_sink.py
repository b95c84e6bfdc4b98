"""Weights & Biases: the mirror of a run's per-round rows (WandbSink), the report uploads
(log_report) and the choice of mode (resolve_wandb_mode). W&B never blocks or fails a run.

The config sent to W&B and every warning pass through ferret/redaction.py; nothing here reads
the environment (``resolve_wandb_mode`` is handed it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ferret.csv_sink import EXAMPLE_COLUMNS
from ferret.redaction import redact

__all__ = ["DEFAULT_WANDB_PROJECT", "X_AXES", "WandbSink", "log_report", "resolve_wandb_mode"]


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
        self.requested = mode
        if mode == "disabled":
            return
        try:
            import wandb

            folder.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=project or DEFAULT_WANDB_PROJECT, entity=entity or None, group=group, job_type=job_type,
                name=name, config=redact(dict(config), self.secrets), dir=str(folder), mode=mode,
                reinit="finish_previous",
                id=run_key, resume="allow" if run_key else None,
                settings=wandb.Settings(init_timeout=self.INIT_TIMEOUT_S, console="off", silent=True))
            self._define_axes()
        except Exception as e:  # W&B must never fail a run
            self._off(e)

    @property
    def mode(self) -> str:
        """The mode actually in use: 'disabled' once W&B switched itself off (or never started)."""
        return self.requested if self.run is not None else "disabled"

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
        except Exception as e:  # W&B must never fail a run
            self._off(e)

    def log_examples(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """One evaluation's per-example rows (prompt id, prediction, reference, scores) as the W&B
        table ``examples``, at that round's step."""
        if self.run is None or not rows:
            return
        try:
            import wandb

            table = wandb.Table(columns=EXAMPLE_COLUMNS, data=[[row.get(c) for c in EXAMPLE_COLUMNS] for row in rows])
            self.run.log({"examples": table}, step=int(rows[0]["round"]))
        except Exception as e:  # W&B must never fail a run
            self._off(e)

    def finish(self, summary: Mapping[str, Any], status: str) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update({**{k: v for k, v in summary.items() if v is not None}, "status": status})
            self.run.finish(exit_code=0 if status == "ok" else 1)
        except Exception as e:  # W&B must never fail a run
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
    except Exception as e:  # W&B must never fail a report
        sink._off(e)
    sink.finish({}, "ok")
