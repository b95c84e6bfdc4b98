"""The federation loop shared by every method: sample, train locally, encode, aggregate, evaluate, log.

Per round r = 1..R (round 0 evaluates the untuned model):

    sampled = seeded sample of max(1, int(N * participation)) clients, without replacement
    federated_round(algo, model, sampled, ...)   # ferret/algorithms/base.py's round, timed per phase
                                                 # (ferret/federated_round.py): the downlink is
                                                 # counted, not applied; bytes and seconds logged
    evaluate every eval_every rounds (loss) / rouge_every rounds and at the end (Rouge-L)

Every evaluation also writes its per-example rows to examples.csv (the reports' paired tests): the
prompt id, the generated and the reference text and every per-example score, so any metric can be
recomputed from the files alone (``ferret rescore``); W&B gets them as a table.
With ``untuned=DIR`` (a ``ferret eval-untuned`` folder, ferret/untuned.py) round 0 is read from
the shared evaluation of the untuned model instead of recomputed, when this method's model at
init is that model.

Determinism: the root seed derives the client sample, every client's batch order, the model
init (tiny) and, inside the methods, every shared-randomness seed; the same config gives the
same metrics.csv on the same hardware, timing columns aside.

Faults and bad input:
- Everything that can reject the input (config, model, data, K, tokenisation) runs before anything
  is written to the run folder, so a bad input leaves existing results byte-identical.
- Every ``checkpoint_every`` rounds the method state, the RNG states and the rows so far are
  checkpointed (ferret/checkpoint.py; methods that hold their weights also wait
  ``checkpoint_every_s`` seconds between two; replayable methods save each round's record instead
  of their weights); a rerun into the same folder resumes from the latest valid checkpoint and
  writes the same metrics.csv as an uninterrupted run (timing columns aside). Checkpoints of
  another config refuse the run (``force`` moves them aside). Checkpoints are deleted once the run
  ends as ok or diverged.
- A NaN/Inf training loss, eval loss or global update ends the run with status 'diverged': the
  rows of the rounds before stay, run.json names the round, and ``ferret run`` exits 0.
"""

from __future__ import annotations

import contextlib
import math
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ferret import checkpoint, precision, untuned
from ferret.algorithms import registry
from ferret.algorithms.base import Algorithm, RoundContext
from ferret.atomic import remove_stale_temps, write_json
from ferret.bench.measure import peak_since_reset_mb, reset_peak
from ferret.config import ConfigError, RunConfig
from ferret.csv_sink import EXAMPLE_COLUMNS, CsvSink
from ferret.data.prompts import prompt_ids, tokenize_example
from ferret.data.registry import load_federated_data
from ferret.data.types import DataError, Example, Metric, example_id
from ferret.federated_round import Timer, federated_round
from ferret.generation import generate, length_batches
from ferret.host import Host
from ferret.metrics import PER_EXAMPLE, example_losses, mean
from ferret.models import ModelError, load_model_and_tokenizer
from ferret.outdir import OutDirError, RunFolder
from ferret.progress import Progress
from ferret.redaction import redact
from ferret.seeding import derive_seed, generator
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


class DivergedError(RuntimeError):
    """A non-finite loss or update; the run stops with status 'diverged' and keeps the rows so far."""

    def __init__(self, message: str, round_: int) -> None:
        super().__init__(message)
        self.round = round_


@dataclass
class EvalSet:
    examples: list[Example]
    tokenized: list[dict[str, list[int]]]
    prompts: list[list[int]]
    metrics: dict[str, Metric] = field(default_factory=dict)  # the data set's extra generation metrics


def _pad_right(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def collate(items: list[dict[str, list[int]]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded training/eval batch; padding is masked in attention and labels."""
    ids = _pad_right([it["input_ids"] for it in items], pad_id)
    mask = _pad_right([[1] * len(it["input_ids"]) for it in items], 0)
    labels = _pad_right([it["labels"] for it in items], -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def client_batches(data: list[dict[str, list[int]]], cfg: RunConfig, round_: int, client: int,
                   pad_id: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """local_steps micro-batches of batch_size, walking seeded permutations of the client's data;
    with local_epochs = N > 0, N whole permutations instead (the last micro-batch may be smaller)."""
    g = generator(cfg.seed, "batches", round_, client)
    order: list[int] = []
    if cfg.local_epochs:
        for _ in range(cfg.local_epochs):
            order += torch.randperm(len(data), generator=g).tolist()
        steps = -(-len(order) // cfg.batch_size)
    else:
        steps = cfg.local_steps
        while len(order) < steps * cfg.batch_size:
            order += torch.randperm(len(data), generator=g).tolist()
    return [collate([data[i] for i in order[s * cfg.batch_size : (s + 1) * cfg.batch_size]], pad_id, device)
            for s in range(steps)]


def sample_clients(cfg: RunConfig, round_: int) -> list[int]:
    return sorted(torch.randperm(cfg.num_clients, generator=generator(cfg.seed, "sample", round_))
                  [:cfg.clients_per_round].tolist())


@torch.no_grad()
def eval_losses(model: torch.nn.Module, ev: EvalSet, cfg: RunConfig, pad_id: int, device: torch.device,
                limit: int | None = None) -> list[float]:
    """Per-example token loss of the first ``limit`` eval examples (all by default), in batches
    of eval_batch_size of similar length (generation.length_batches), in the examples' order;
    their mean is the official batch-1 eval loss."""
    model.eval()
    items = ev.tokenized[:limit]
    losses = [0.0] * len(items)
    for batch in length_batches([len(it["input_ids"]) for it in items], cfg.eval_batch_size):
        with precision.autocast(cfg.dtype, cfg.precision, device):
            values = example_losses(model, collate([items[i] for i in batch], pad_id, device)).tolist()
        for i, value in zip(batch, values):
            losses[i] = value
    return losses


def score(model: torch.nn.Module, tokenizer: Any, ev: EvalSet, cfg: RunConfig, device: torch.device, *,
          loss: bool, rouge: bool) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Eval loss and/or the generation metrics (metrics.PER_EXAMPLE, + the data set's): (their means,
    one row per example: its stable prompt_id and, where generated, the prediction and reference
    texts beside every per-example score)."""
    means: dict[str, float] = {}
    per_example: list[dict[str, Any]] = [{"example": i, "prompt_id": example_id(ex), "task": ex.task}
                                         for i, ex in enumerate(ev.examples)]
    if loss:
        losses = eval_losses(model, ev, cfg, tokenizer.pad_token_id, device)
        means["eval_loss"] = sum(losses) / len(losses)
        for row, value in zip(per_example, losses):
            row["eval_loss"] = value
    if rouge:
        references = [ex.output for ex in ev.examples]
        with precision.autocast(cfg.dtype, cfg.precision, device):
            predictions = generate(model, tokenizer, ev.prompts, cfg.eval_batch_size, cfg.max_new_tokens, device)
        for row, prediction, reference in zip(per_example, predictions, references):
            row.update(prediction=prediction, reference=reference)
        for name, scorer in PER_EXAMPLE.items():  # rouge_l (rouge-score) and rouge_l_official (rouge 1.0.1)
            scores = scorer(predictions, references)
            means[name] = mean(scores)
            for row, value in zip(per_example, scores):
                row[name] = value
        means.update({name: fn(predictions, references) for name, fn in ev.metrics.items()})
    return means, per_example


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def apply_tf32(enabled: bool, device: torch.device) -> None:
    """The ``tf32`` setting: TensorFloat-32 for float32 matmuls and convolutions on CUDA (the
    tensor cores' fp32 path, several times faster than full fp32 at the paper's model sizes).
    Only CUDA has it; on other devices the process's settings are left as they are."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def environment_info(device: torch.device) -> dict[str, Any]:
    versions = {}
    for pkg in ("ferret-bench", "torch", "transformers", "peft", "safetensors", "rouge-score", "rouge", "gguf"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    hardware = {"platform": platform.platform(), "machine": platform.machine(), "cpus": torch.get_num_threads(),
                "device": str(device)}
    if device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    return {"python": sys.version.split()[0], "versions": versions, "git_commit": _git_commit(), "hardware": hardware}


def _check_k(cfg: RunConfig, params: Iterable[torch.Tensor], what: str) -> None:
    n = sum(p.numel() for p in params)
    if n < cfg.K:
        raise ConfigError(f"K={cfg.K}: larger than the {n} trainable parameters of {what}")


def _load_base(cfg: RunConfig, record: dict[str, Any], host: Host) -> tuple[torch.nn.Module, Any, Any, EvalSet]:
    """The untuned model, its tokenizer, the federated data and the tokenised eval set."""
    data = load_federated_data(cfg)  # before the model: a data typo must not cost a download first
    # The untuned model is one fixed model, like a pretrained checkpoint: a random-init model's
    # weights do not follow the run's seed, so every run of a grid starts from (and is scored at
    # round 0 on) the same weights.
    model, tokenizer, model_info = load_model_and_tokenizer(
        cfg.model, dtype=precision.storage_dtype(cfg.dtype, cfg.precision), device=cfg.device,
        seed=derive_seed(0, "init") % 2**31,
        trust_remote_code=cfg.trust_remote_code, resources=host.resources)
    record["model"] = model_info
    ev = EvalSet(data.eval, [tokenize_example(tokenizer, ex, cfg.max_length) for ex in data.eval],
                 [prompt_ids(tokenizer, ex, cfg.max_length) for ex in data.eval], data.metrics)
    return model, tokenizer, data, ev


def _prepare(cfg: RunConfig, record: dict[str, Any],
             host: Host) -> tuple[Algorithm, torch.nn.Module, Any, list, EvalSet]:
    """Model, data, tokenised clients and eval set, and the set-up method: every check of the input
    that needs them (K, empty clients, max_length) fails here, before the run folder is touched."""
    algo_cls = registry.resolve(cfg.method, cfg.trust_custom_method)
    options = registry.options_for(cfg.method, cfg.method_options, cfg.trust_custom_method)
    model, tokenizer, data, ev = _load_base(cfg, record, host)
    # Before setup too: a full-parameter method would allocate K-sized state first.
    _check_k(cfg, (p for p in model.parameters() if p.requires_grad), f"model={cfg.model!r}")
    empty = [i for i, c in enumerate(data.clients) if not c]
    if empty:
        raise DataError(f"client {empty[0]} of dataset={cfg.dataset!r} has no training data "
                        f"({len(empty)} of {len(data.clients)} clients are empty)")
    clients = [[tokenize_example(tokenizer, ex, cfg.max_length) for ex in c] for c in data.clients]
    record["data"] = {"name": data.name, "clients": len(clients), "client_tasks": data.client_tasks,
                      "train_examples": sum(map(len, clients)), "eval_examples": len(ev.examples)}
    algo: Algorithm = algo_cls(cfg, options)
    model = algo.setup(model, tokenizer)
    _check_k(cfg, algo.global_params.values(), f"method={cfg.method!r} on model={cfg.model!r}")
    return algo, model, tokenizer, clients, ev


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
        stage = folder.staging
        wandb_sink: WandbSink | None = None
        error: BaseException | None = None
        # Preparation is inside the try: a failure (or a signal) while loading the model or the
        # data ends with run.json and traceback.log like one in round 2. Bad input found there
        # (K, empty clients, an untuned folder of another model) still writes nothing.
        try:
            algo, model, tokenizer, clients, ev = _prepare(cfg, record, host)
            # A folder made for another model or eval set is bad input: refused before anything is written.
            shared = untuned.load(Path(cfg.untuned), cfg.to_dict(), ev.examples) if cfg.untuned else None
            _check_free_disk(out, algo, cfg)
            # A replay rebuilds the weights from these starting weights: their identity guards it
            # (needed to write checkpoints, or to check those found).
            needs_init = algo.replayable and (cfg.checkpoint_every or (out / checkpoint.FOLDER).is_dir())
            init = checkpoint.weights_digest(algo.global_params) if needs_init else None
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
            remove_stale_temps(stage, ("examples.csv", "metrics.csv", "run.json"))  # left by a kill mid-write
            extra: dict[str, Any] = {"wandb_id": secrets.token_hex(4), "resumed_from": []}
            if resumed is not None:
                checkpoint.restore(resumed, algo)
                extra = {**resumed.extra, "resumed_from": [*resumed.extra.get("resumed_from", []), resumed.round]}
                record["resumed_from"] = extra["resumed_from"]
                print(f"ferret: {run_id}: resuming after round {resumed.round} from {out / checkpoint.FOLDER}",
                      file=sys.stderr, flush=True)
            record["wandb_mode"] = host.wandb_mode(cfg.wandb_mode)
            write_json(stage / "run.json", record, host.secrets, verbatim=("config",))
            sinks: list[Sink] = [CsvSink(stage / "metrics.csv", resumed.rows if resumed else ())]
            wandb_sink = WandbSink(mode=record["wandb_mode"], project=cfg.wandb_project or host.wandb_project,
                                   entity=cfg.wandb_entity or host.wandb_entity or "", group=cfg.experiment,
                                   job_type=cfg.method, name=run_id,
                                   config=cfg.to_dict(), folder=out, run_key=extra["wandb_id"],
                                   rows=resumed.rows if resumed else (), secrets=host.secrets)
            record["wandb_mode"] = wandb_sink.mode  # 'disabled' when W&B switched itself off
            sinks.append(wandb_sink)
            summary = _federate(cfg, algo, model, tokenizer, clients, ev, sinks, run_id, device,
                                out=out, resumed=resumed, extra=extra, shared=shared, init=init)
            record["status"] = summary.pop("status")
            record["final"] = summary
        except DivergedError as e:
            record["status"], record["error"], record["diverged_round"] = "diverged", str(e), e.round
        except BaseException as e:
            error = e
            raise
        finally:
            if wandb_sink is not None:
                record["wandb_mode"] = wandb_sink.mode
            _finish(record, folder, t_start, error, host.secrets)
            if wandb_sink is not None:
                wandb_sink.finish({**record.get("final", {}), "wall_clock_s": record["wall_clock_s"]},
                                  record["status"])
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
    model, tokenizer, _, ev = _load_base(cfg, record, host)
    with Timer() as t_eval:
        means, per_example = score(model, tokenizer, ev, cfg, device, loss=True, rouge=True)
    probe = eval_losses(model, ev, cfg, tokenizer.pad_token_id, device, limit=1)[0]  # what runs recompute
    row = {"round": 0, "clients": 0, "uplink_bytes": 0, "downlink_bytes": 0, "cum_bytes": 0, **means,
           "t_eval_s": t_eval.seconds}
    out.mkdir(parents=True, exist_ok=True)
    CsvSink(out / untuned.EXAMPLES, [{"round": 0, **e} for e in per_example], columns=EXAMPLE_COLUMNS)
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


def _federate(cfg: RunConfig, algo: Algorithm, model: torch.nn.Module, tokenizer: Any,
              clients: list[list[dict[str, list[int]]]], ev: EvalSet, sinks: list[Sink],
              run_id: str, device: torch.device, *, out: Path, resumed: checkpoint.Checkpoint | None = None,
              extra: dict[str, Any] | None = None, shared: tuple[dict, list[dict], float] | None = None,
              init: str | None = None) -> dict[str, Any]:
    """The rounds after ``resumed`` (all of them without), checkpointing as ``checkpoint.Cadence`` says.
    ``shared``: the untuned evaluation's (round-0 row, per-example rows, probe loss) (ferret/untuned.py);
    ``init``: the starting weights' digest, saved with a replayable method's round records."""
    extra = extra if extra is not None else {}
    pad_id = tokenizer.pad_token_id
    weights = [1.0 if cfg.equal_weight else float(len(c)) for c in clients]
    start = resumed.round if resumed is not None else 0
    progress = Progress(cfg.rounds, desc=f"{run_id}", initial=start)
    rows: list[dict[str, Any]] = list(resumed.rows) if resumed is not None else []  # raw values, for checkpoints
    # Per-example rows go to examples.csv beside metrics.csv; a checkpoint keeps them (in its
    # `extra`) so a resumed run writes the same file.
    example_rows: list[dict[str, Any]] = list((resumed.extra if resumed is not None else {}).get("examples", []))
    # A replayable method's checkpoint: every round's record (kilobytes), replayed on resume.
    records: list[dict[str, Any]] | None = None
    if algo.replayable:
        records = list(resumed.records or []) if resumed is not None else []
    cadence = checkpoint.Cadence(cfg.checkpoint_every, cfg.checkpoint_every_s, cfg.rounds, algo.replayable)
    metrics_csv = next(s for s in sinks if isinstance(s, CsvSink)).path
    examples_sink = CsvSink(metrics_csv.with_name("examples.csv"), example_rows, columns=EXAMPLE_COLUMNS)

    def log(row: dict[str, Any]) -> None:
        rows.append(dict(row))
        for sink in sinks:
            sink.log(row)

    def log_examples(new: list[dict[str, Any]]) -> None:
        example_rows.extend(new)
        examples_sink.log_many(new)
        for sink in sinks:  # W&B: the evaluation's generations as a table
            if isinstance(sink, WandbSink):
                sink.log_table("examples", new, EXAMPLE_COLUMNS)

    def evaluate(round_: int, row: dict[str, Any]) -> None:
        final = round_ == cfg.rounds
        loss = round_ == 0 or final or round_ % cfg.eval_every == 0
        rouge = round_ == 0 or final or bool(cfg.rouge_every and round_ % cfg.rouge_every == 0)
        means: dict[str, float] = {}
        with Timer() as t_eval:
            if loss or rouge:  # loading the global model costs time too (FedAvg: a full copy)
                reset_peak(device)  # the evaluation's own peak (KV cache, logits), apart from training's
                algo.load_global(model)
                means, per_example = score(model, tokenizer, ev, cfg, device, loss=loss, rouge=rouge)
                row.update(means)
                row["peak_mem_eval_mb"] = peak_since_reset_mb(device)
        row["t_eval_s"] = t_eval.seconds
        if means:
            log_examples([{"run_id": run_id, "method": cfg.method, "round": round_, **e} for e in per_example])
        if not math.isfinite(row.get("eval_loss", 0.0)):
            raise DivergedError(f"eval loss is {row['eval_loss']} at round {round_}", round_)

    def shared_round0(row: dict[str, Any], shared_row: dict[str, Any], shared_examples: list[dict],
                      probe: float) -> bool:
        """Round 0 from the shared untuned evaluation, when this run's model at init is that model:
        the first eval example's loss, alone in a batch, must equal the untuned model's exactly."""
        with Timer() as t_check:
            algo.load_global(model)
            mine = eval_losses(model, ev, cfg, pad_id, device, limit=1)[0]
        if mine != probe:
            print(f"ferret: {run_id}: this method's model at init differs from the untuned model of "
                  f"{cfg.untuned}; evaluating round 0 here", file=sys.stderr, flush=True)
            extra["round0"] = "own: the model at init differs from the base model"
            return False
        row.update({k: v for k, v in shared_row.items() if k not in row and k != "t_eval_s"})
        row["t_eval_s"] = t_check.seconds  # this run's cost: the check, not the shared evaluation
        log_examples([{**e, "run_id": run_id, "method": cfg.method} for e in shared_examples])
        extra["round0"] = f"shared: {cfg.untuned}"
        return True

    try:
        if start == 0:
            row0: dict[str, Any] = {"run_id": run_id, "method": cfg.method, "round": 0, "clients": 0,
                                    "uplink_bytes": 0, "downlink_bytes": 0, "cum_bytes": 0}
            if not (shared and shared_round0(row0, *shared)):
                extra.setdefault("round0", "evaluated in this run")
                evaluate(0, row0)
            log(row0)
        cum_bytes = rows[-1]["cum_bytes"]
        for r in range(start + 1, cfg.rounds + 1):
            ctx = RoundContext(round=r, rounds=cfg.rounds, seed=cfg.seed, device=device)
            t_round = time.perf_counter()
            sampled = sample_clients(cfg, r)
            reset_peak(device)  # the local-training peak, what the paper's Table 6 reports
            # r bound as a default: the round's batches are built within this iteration
            done = federated_round(algo, model, sampled, weights,
                                   lambda c, r=r: client_batches(clients[c], cfg, r, c, pad_id, device), ctx)
            peak_train = peak_since_reset_mb(device)
            if records is not None:
                records.append(algo.round_record())
            cum_bytes += done.uplink_bytes + done.downlink_bytes
            train_loss = done.train_loss
            row = {"run_id": run_id, "method": cfg.method, "round": r, "clients": len(sampled),
                   "train_loss": train_loss, "uplink_bytes": done.uplink_bytes,
                   "downlink_bytes": done.downlink_bytes,
                   "uplink_bytes_per_client": done.uplink_bytes / len(sampled),
                   "downlink_bytes_per_client": done.downlink_bytes / len(sampled), "cum_bytes": cum_bytes,
                   "t_local_s": done.t_local_s, "t_encode_s": done.t_encode_s, "t_aggregate_s": done.t_aggregate_s,
                   "peak_mem_train_mb": peak_train,
                   "lost_update_local": done.lost_update_local, "lost_update_server": done.lost_update_server}
            # The diverged round's row is not logged: metrics.csv keeps the finished rounds only.
            if not math.isfinite(train_loss):
                raise DivergedError(f"training loss is {train_loss} at round {r}", r)
            if not algo.is_finite():
                raise DivergedError(f"the global update holds NaN/Inf at round {r}", r)
            evaluate(r, row)
            row["t_round_s"] = time.perf_counter() - t_round
            log(row)
            progress.update(row)
            if cadence.due(r):
                checkpoint.save(out, r, cfg.to_dict(), rows, algo.state_dict(),
                                {**extra, "examples": example_rows}, records=records, init=init)
                cadence.saved()
    finally:
        progress.close()
    first, last = rows[0], (rows[-1] if len(rows) > 1 else {})
    return {"status": "ok", "rounds": cfg.rounds, "round0": extra.get("round0"),
            "initial_eval_loss": first.get("eval_loss"), "initial_rouge_l": first.get("rouge_l"),
            "final_eval_loss": last.get("eval_loss"), "final_rouge_l": last.get("rouge_l"),
            "final_train_loss": last.get("train_loss"), "total_bytes": cum_bytes,
            "uplink_bytes_per_client_per_round": last.get("uplink_bytes_per_client"),
            "downlink_bytes_per_client_per_round": last.get("downlink_bytes_per_client")}
