"""One run's lifecycle (``ferret run``): prepare, run the rounds, record the outcome, publish.

    check the input -> load model and data, tokenise, set up the method (``_prepare``) -> take the
    run folder (ferret/outdir.py) -> resume from the latest valid checkpoint, if any -> the rounds
    (ferret/federation.py) over a RunState, logged to the sinks (metrics.csv, examples.csv, W&B)
    -> run.json with the true status -> publish

Also ``evaluate_untuned``: the untuned model's evaluation that the runs of a grid share
(ferret/untuned.py).

Faults and bad input:
- Everything that can reject the input (config, model, data, K, tokenisation) runs before anything
  is written to the run folder, so a bad input leaves existing results byte-identical.
- Every ``checkpoint_every`` rounds the method state, the RNG states and the run's state are
  checkpointed (ferret/checkpoint.py; methods that hold their weights also wait
  ``checkpoint_every_s`` seconds between two; replayable methods save each round's record instead
  of their weights); a rerun into the same folder resumes from the latest valid checkpoint and
  writes the same metrics.csv as an uninterrupted run (timing columns aside). Checkpoints of
  another config refuse the run (``force`` moves them aside). Checkpoints are deleted once the run
  ends as ok or diverged.
- A NaN/Inf training loss, eval loss or global update ends the run with status 'diverged': the
  rows of the rounds before stay, run.json names the round, and ``ferret run`` exits 0.
- SIGTERM (and SIGINT) end the run as 'interrupted', any other exception as 'failed'; either way
  run.json records it and the traceback goes to traceback.log.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ferret import checkpoint, preparation, untuned
from ferret.algorithms.base import Algorithm
from ferret.atomic import remove_stale_temps, write_json
from ferret.config import ConfigError, RunConfig
from ferret.csv_sink import EXAMPLE_COLUMNS, CsvSink, CsvTable
from ferret.data.types import DataError
from ferret.environment import environment_info
from ferret.evaluation import eval_losses, score
from ferret.federated_round import Timer
from ferret.federation import DivergedError, Federation
from ferret.host import Host
from ferret.models import ModelError
from ferret.outdir import OutDirError, RunFolder
from ferret.redaction import redact
from ferret.run_state import RunState
from ferret.seeding import derive_seed
from ferret.sink import Sink
from ferret.wandb_sink import WandbSink

TRACEBACK_LOG = "traceback.log"
# Bad input: refused with exit status 2 and nothing written, wherever it is found.
BAD_INPUT = (ConfigError, DataError, ModelError, OutDirError)


def check_device(device: str) -> None:
    """A CUDA device on a machine without one (or without that index) is bad input, found before
    any model or data is loaded."""
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            raise ConfigError(f"device={device!r}: this machine has "
                              f"{f'{count} CUDA device(s)' if count else 'no CUDA device'}")


class Interrupted(BaseException):
    """SIGTERM (SLURM pre-emption or time-out, scancel) or SIGINT: the run stops as 'interrupted'."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def apply_tf32(enabled: bool, device: torch.device) -> None:
    """The ``tf32`` setting: TensorFloat-32 for float32 matmuls and convolutions on CUDA (the
    tensor cores' fp32 path, several times faster than full fp32 at the paper's model sizes).
    Only CUDA has it; on other devices the process's settings are left as they are."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM raises :class:`Interrupted` in the main thread (SIGINT raises KeyboardInterrupt as
    always). The exception unwinds through the atomic writers, which remove their temporaries, so
    whatever point it hits is safe: the visible files and the latest checkpoint stay complete."""
    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_free_disk(out: Path, algo: Algorithm, cfg: RunConfig) -> None:
    """Room for every checkpoint copy on disk at once, checked before round 0: the ``KEEP``
    published plus the one being written (the checkpoints already there count as room)."""
    if not cfg.checkpoint_every:
        return
    one = sum(v.numel() * v.element_size() for v in algo.state_dict().values() if isinstance(v, torch.Tensor))
    need = (checkpoint.KEEP + 1) * one - checkpoint.disk_bytes(out)
    free = shutil.disk_usage(out).free
    if free < need + 2**20:
        raise OutDirError(f"--out {out}: {free / 2**20:.1f} MiB free, {checkpoint.KEEP + 1} checkpoint copies "
                          f"need {need / 2**20:.1f} MiB")


def one_line(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "stopped by SIGINT"
    if isinstance(error, Interrupted):
        return str(error)
    return f"{type(error).__name__}: {error}".splitlines()[0]


def run(cfg: RunConfig, out: Path, *, force: bool = False, host: Host = Host()) -> dict[str, Any]:
    """Run one federated experiment into the run folder ``out`` (ferret/outdir.py); return run.json's record.
    ``host``: the resources folder, W&B defaults and secrets (ferret/host.py; the CLI reads them).

    Bad input raises ConfigError, DataError, ModelError or OutDirError before anything is published;
    a folder holding this config's finished run raises outdir.AlreadyDone. A run resumes from the
    latest valid checkpoint in ``out/checkpoints``; a diverged run returns status 'diverged'. Any
    other exception (SIGTERM as :class:`Interrupted`, SIGINT as KeyboardInterrupt) is recorded as
    status 'interrupted' or 'failed' with its first line, the traceback goes to out/traceback.log,
    and the exception propagates."""
    t_start = time.perf_counter()
    check_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    apply_tf32(cfg.tf32, device)
    torch.manual_seed(derive_seed(cfg.seed, "torch"))

    run_id = cfg.resolved_run_id()
    record: dict[str, Any] = {"run_id": run_id, "status": "running", "config": cfg.to_dict(),
                              **environment_info(device)}
    with RunFolder(out, cfg.to_dict(), force=force) as folder, _signals_interrupt():
        sinks: list[Sink] = []
        wandb_sink: WandbSink | None = None
        error: BaseException | None = None
        # Preparation is inside the try: a failure (or a signal) while loading the model or the
        # data ends with run.json and traceback.log like one in round 2. Bad input found there
        # (K, empty clients, an untuned folder of another model) still writes nothing.
        try:
            setup = preparation.prepare(cfg, record, host)
            # A folder made for another model or eval set is bad input: refused before anything is written.
            shared = untuned.load(Path(cfg.untuned), cfg.to_dict(), setup.ev.examples) if cfg.untuned else None
            _check_free_disk(out, setup.algo, cfg)
            # A replay rebuilds the weights from these starting weights: their identity guards it
            # (needed to write checkpoints, or to check those found).
            needs_init = setup.algo.replayable and (cfg.checkpoint_every or (out / checkpoint.FOLDER).is_dir())
            init = checkpoint.weights_digest(setup.algo.global_params) if needs_init else None
            # Checkpoints of another config refuse the run here, as bad input (--force moves them aside).
            resumed = checkpoint.latest(out, cfg.to_dict(), init=init, force=force)
        except BAD_INPUT:
            folder.discard()
            raise
        except BaseException as e:
            error = e
            _finish(record, folder, t_start, error, host.secrets)
            raise
        try:
            remove_stale_temps(folder.staging, ("examples.csv", "metrics.csv", "run.json"))  # left by a kill mid-write
            if resumed is None:
                state = RunState(wandb_id=secrets.token_hex(4), init=init,
                                 records=[] if setup.algo.replayable else None)
            else:
                checkpoint.restore(resumed, setup.algo)
                state = resumed.state
                state.resumed_from.append(resumed.round)
                record["resumed_from"] = list(state.resumed_from)
                print(f"ferret: {run_id}: resuming after round {resumed.round} from {out / checkpoint.FOLDER}",
                      file=sys.stderr, flush=True)
            record["wandb_mode"] = host.wandb_mode(cfg.wandb_mode)
            write_json(folder.staging / "run.json", record, host.secrets, verbatim=("config",))
            sinks.append(CsvSink(folder.staging, state.rows, state.examples))
            wandb_sink = WandbSink(mode=record["wandb_mode"], project=cfg.wandb_project or host.wandb_project,
                                   entity=cfg.wandb_entity or host.wandb_entity or "", group=cfg.experiment,
                                   job_type=cfg.method, name=run_id, config=cfg.to_dict(), folder=out,
                                   run_key=state.wandb_id, rows=state.rows, secrets=host.secrets)
            sinks.append(wandb_sink)
            record["wandb_mode"] = wandb_sink.mode  # 'disabled' when W&B switched itself off
            federation = Federation(cfg, setup, sinks, run_id=run_id, device=device, out=out, untuned=shared)
            record["final"] = federation.run(state)
            record["status"] = "ok"
        except DivergedError as e:
            record["status"], record["error"], record["diverged_round"] = "diverged", str(e), e.round
        except BaseException as e:
            error = e
            raise
        finally:
            if wandb_sink is not None:
                record["wandb_mode"] = wandb_sink.mode
            _finish(record, folder, t_start, error, host.secrets)
            for sink in sinks:
                sink.finish({**record.get("final", {}), "wall_clock_s": record["wall_clock_s"]}, record["status"])
            if record["status"] in ("ok", "diverged"):
                checkpoint.clear(out)  # finished: nothing to resume
    return record


def evaluate_untuned(cfg: RunConfig, out: Path, host: Host = Host()) -> dict[str, Any]:
    """Evaluate the untuned model once into ``out`` (ferret/untuned.py): examples.csv, then
    untuned.json with the identity runs check and the round-0 row they share. Returns the record."""
    check_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    apply_tf32(cfg.tf32, device)
    record: dict[str, Any] = {}
    model, tokenizer, _, ev = preparation.load_base(cfg, record, host)
    with Timer() as t_eval:
        means, per_example = score(model, tokenizer, ev, cfg, device, loss=True, rouge=True)
    probe = eval_losses(model, ev, cfg, tokenizer.pad_token_id, device, limit=1)[0]  # what runs recompute
    row = {"round": 0, "clients": 0, "uplink_bytes": 0, "downlink_bytes": 0, "cum_bytes": 0, **means,
           "t_eval_s": t_eval.seconds}
    out.mkdir(parents=True, exist_ok=True)
    CsvTable(out / untuned.EXAMPLES, [{"round": 0, **e} for e in per_example], columns=EXAMPLE_COLUMNS)
    record = {"identity": untuned.identity(cfg.to_dict(), ev.examples), "row": row, "probe_loss": probe,
              "model": record["model"],
              **environment_info(device)}
    write_json(out / untuned.RECORD, record, host.secrets)  # last: its presence means the folder is complete
    return record


def _finish(record: dict[str, Any], folder: RunFolder, t_start: float, error: BaseException | None,
            redacted: Sequence[str] = ()) -> None:
    """Record the final status and publish the run (ferret/outdir.py). An error makes the status
    'interrupted' (a signal) or 'failed', with its first line; its traceback goes to traceback.log.
    Writing may itself fail (a full disk): then the error that stopped the run is the one raised."""
    if error is not None:
        record["status"] = "interrupted" if isinstance(error, (Interrupted, KeyboardInterrupt)) else "failed"
        record["error"] = one_line(error)
    record["wall_clock_s"] = round(time.perf_counter() - t_start, 3)
    try:
        folder.release_reserve()
        (folder.out / TRACEBACK_LOG).unlink(missing_ok=True)  # an earlier failure's, never beside this run
        if error is not None:
            record["traceback"] = str(folder.out / TRACEBACK_LOG)
            (folder.out / TRACEBACK_LOG).write_text(redact("".join(traceback.format_exception(error)), redacted))
        folder.seal(record)
        # The config is recorded as given: a value that equals a secret is the user's own input.
        write_json(folder.staging / "run.json", record, redacted, verbatim=("config",))
        folder.publish(record["status"])
    except OSError as e:
        if error is None:
            raise
        print(f"ferret: could not record status {record['status']} in {folder.out}: {one_line(e)}",
              file=sys.stderr)
