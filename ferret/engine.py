"""The federation loop shared by every method: sample, train locally, encode, aggregate, evaluate, log.

Per round r = 1..R (round 0 evaluates the untuned model):

    sampled = seeded sample of max(1, int(N * participation)) clients, without replacement
    for c in sampled:
        down = encode(algo.downlink(c))          # bytes counted; the decoded copy is used
        algo.load_global(model)                  # the single working copy, reset in place
        algo.local_train(model, batches(c, r), c)   # t_local
        up = encode(algo.encode(model, c))       # t_encode; bytes counted
        algo.receive(decode(up), p_c)            # t_aggregate (with the final aggregate below)
    algo.aggregate()
    evaluate every eval_every rounds (loss) / rouge_every rounds and at the end (Rouge-L)

Determinism: the root seed derives the client sample, every client's batch order, the model
init (tiny) and, inside the methods, every shared-randomness seed; the same config gives the
same metrics.csv on the same hardware, timing columns aside.
"""

from __future__ import annotations

import math
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ferret import comm
from ferret.algorithms import registry
from ferret.algorithms.base import Algorithm, RoundContext
from ferret.config import RunConfig
from ferret.data.prompts import prompt_ids, tokenize_example
from ferret.data.registry import load_federated_data
from ferret.data.types import Example
from ferret.metrics import example_losses, rouge_l
from ferret.models import load_model_and_tokenizer
from ferret.seeding import derive_seed, generator
from ferret.tracking import CsvSink, Progress, WandbSink, resolve_wandb_mode, write_json


class DivergedError(RuntimeError):
    """A non-finite loss; the run stops with status 'diverged' and keeps the rows so far."""


@dataclass
class EvalSet:
    examples: list[Example]
    tokenized: list[dict[str, list[int]]]
    prompts: list[list[int]]


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
    """local_steps micro-batches of batch_size, walking seeded permutations of the client's data."""
    g = generator(cfg.seed, "batches", round_, client)
    need = cfg.local_steps * cfg.batch_size
    order: list[int] = []
    while len(order) < need:
        order += torch.randperm(len(data), generator=g).tolist()
    return [collate([data[i] for i in order[s * cfg.batch_size : (s + 1) * cfg.batch_size]], pad_id, device)
            for s in range(cfg.local_steps)]


def sample_clients(cfg: RunConfig, round_: int) -> list[int]:
    m = max(1, int(cfg.num_clients * cfg.participation))
    return sorted(torch.randperm(cfg.num_clients, generator=generator(cfg.seed, "sample", round_))[:m].tolist())


@torch.no_grad()
def eval_loss(model: torch.nn.Module, ev: EvalSet, cfg: RunConfig, pad_id: int, device: torch.device) -> float:
    """Mean over examples of the per-example token loss (the official batch-1 eval loss)."""
    model.eval()
    losses = []
    for s in range(0, len(ev.tokenized), cfg.eval_batch_size):
        losses.append(example_losses(model, collate(ev.tokenized[s : s + cfg.eval_batch_size], pad_id, device)))
    return torch.cat(losses).mean().item()


def _ignores_position_ids(model: torch.nn.Module) -> bool:
    """True for peft prompt-learning models (prompt tuning, P-tuning): peft drops ``position_ids``
    and numbers positions from the start of [virtual tokens, padding, prompt], so left padding
    would shift every prompt token's position away from the one it had in training."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _generation_batches(prompts: list[list[int]], size: int, pad_free: bool) -> list[list[int]]:
    """Index batches of at most ``size`` prompts: consecutive ones, or (``pad_free``) prompts of
    equal length only, so that no batch needs padding."""
    if not pad_free:
        return [list(range(s, min(s + size, len(prompts)))) for s in range(0, len(prompts), size)]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    return [group[s : s + size] for _, group in sorted(by_length.items()) for s in range(0, len(group), size)]


@torch.no_grad()
def generate(model: torch.nn.Module, tokenizer: Any, prompts: list[list[int]], cfg: RunConfig,
             device: torch.device) -> list[str]:
    """Greedy generations for the prompts, left-padded in batches of ``eval_batch_size``.

    Models that ignore ``position_ids`` (peft prompt learning, see :func:`_ignores_position_ids`)
    are instead batched by prompt length, so they generate without padding and each prompt gets
    exactly the positions it would get alone. ``generate`` returns the input ids followed by the
    new tokens (peft's virtual tokens are not in its output), so the new tokens start at ``width``.
    """
    model.eval()
    outputs: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    for batch in _generation_batches(prompts, cfg.eval_batch_size, _ignores_position_ids(model)):
        chunk = [prompts[i] for i in batch]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=cfg.max_new_tokens,
                             do_sample=False, num_beams=1, pad_token_id=pad)
        for i, text in zip(batch, tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)):
            outputs[i] = text.strip()
    return outputs


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info(device: torch.device) -> dict[str, Any]:
    versions = {}
    for pkg in ("ferret-bench", "torch", "transformers", "peft", "safetensors", "rouge-score", "gguf"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    hardware = {"platform": platform.platform(), "machine": platform.machine(), "cpus": torch.get_num_threads(),
                "device": str(device)}
    if device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    return {"python": sys.version.split()[0], "versions": versions, "git_commit": _git_commit(), "hardware": hardware}


class Timer:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(cfg: RunConfig, out: Path) -> dict[str, Any]:
    """Run one federated experiment and write out/metrics.csv and out/run.json; return the summary."""
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    algo_cls = registry.resolve(cfg.method)
    options = registry.options_for(cfg.method, cfg.method_options)
    device = torch.device(cfg.device)
    torch.manual_seed(derive_seed(cfg.seed, "torch"))

    run_id = cfg.resolved_run_id()
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"run_id": run_id, "status": "running", "config": cfg.to_dict(),
                              **environment_info(device)}
    write_json(out / "run.json", record)
    sinks = [CsvSink(out / "metrics.csv")]
    record["wandb_mode"] = resolve_wandb_mode(cfg.wandb_mode)
    wandb_sink = WandbSink(mode=record["wandb_mode"], project=cfg.wandb_project,
                           entity=cfg.wandb_entity, group=cfg.experiment, job_type=cfg.method, name=run_id,
                           config=cfg.to_dict(), folder=out)
    sinks.append(wandb_sink)
    try:
        model, tokenizer, model_info = load_model_and_tokenizer(
            cfg.model, dtype=cfg.dtype, device=cfg.device, seed=derive_seed(cfg.seed, "init") % 2**31,
            trust_remote_code=cfg.trust_remote_code)
        record["model"] = model_info
        data = load_federated_data(cfg)
        pad_id = tokenizer.pad_token_id
        clients = [[tokenize_example(tokenizer, ex, cfg.max_length) for ex in c] for c in data.clients]
        ev = EvalSet(data.eval, [tokenize_example(tokenizer, ex, cfg.max_length) for ex in data.eval],
                     [prompt_ids(tokenizer, ex, cfg.max_length) for ex in data.eval])
        record["data"] = {"name": data.name, "clients": len(clients), "client_tasks": data.client_tasks,
                          "train_examples": sum(map(len, clients)), "eval_examples": len(ev.examples)}
        algo: Algorithm = algo_cls(cfg, options)
        model = algo.setup(model, tokenizer)

        summary = _federate(cfg, algo, model, tokenizer, clients, ev, sinks, run_id, device)
        record["status"] = summary.pop("status")
        record["final"] = summary
    except DivergedError as e:
        record["status"], record["error"] = "diverged", str(e)
    except BaseException as e:
        record["status"], record["error"] = "failed", f"{type(e).__name__}: {e}".splitlines()[0]
        raise
    finally:
        record["wall_clock_s"] = round(time.perf_counter() - t_start, 3)
        write_json(out / "run.json", record)
        wandb_sink.finish({**record.get("final", {}), "wall_clock_s": record["wall_clock_s"]}, record["status"])
    return record


def _federate(cfg: RunConfig, algo: Algorithm, model: torch.nn.Module, tokenizer: Any,
              clients: list[list[dict[str, list[int]]]], ev: EvalSet, sinks: list[CsvSink | WandbSink],
              run_id: str, device: torch.device) -> dict[str, Any]:
    pad_id = tokenizer.pad_token_id
    references = [ex.output for ex in ev.examples]
    weights = [1.0 if cfg.equal_weight else float(len(c)) for c in clients]
    progress = Progress(cfg.rounds, desc=f"{run_id}")
    cum_bytes = 0

    def log(row: dict[str, Any]) -> None:
        for sink in sinks:
            sink.log(row)

    first: dict[str, Any] = {}
    last: dict[str, Any] = {}

    def evaluate(round_: int, row: dict[str, Any]) -> None:
        final = round_ == cfg.rounds
        with Timer() as t_eval:
            algo.load_global(model)
            if round_ == 0 or final or round_ % cfg.eval_every == 0:
                row["eval_loss"] = eval_loss(model, ev, cfg, pad_id, device)
            if round_ == 0 or final or (cfg.rouge_every and round_ % cfg.rouge_every == 0):
                row["rouge_l"] = rouge_l(generate(model, tokenizer, ev.prompts, cfg, device), references)
        row["t_eval_s"] = t_eval.seconds
        if not math.isfinite(row.get("eval_loss", 0.0)):
            raise DivergedError(f"eval loss is {row['eval_loss']} at round {round_}")

    try:
        row0: dict[str, Any] = {"run_id": run_id, "method": cfg.method, "round": 0, "clients": 0,
                                "uplink_bytes": 0, "downlink_bytes": 0, "cum_bytes": 0}
        evaluate(0, row0)
        row0["peak_mem_mb"] = _peak_mem_mb(device)
        log(row0)
        first = dict(row0)
        for r in range(1, cfg.rounds + 1):
            ctx = RoundContext(round=r, rounds=cfg.rounds, seed=cfg.seed, device=device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t_round = time.perf_counter()
            sampled = sample_clients(cfg, r)
            total_w = sum(weights[c] for c in sampled)
            t_local, t_encode, t_agg = Timer(), Timer(), Timer()
            up_bytes = down_bytes = 0
            losses = []
            for c in sampled:
                down_bytes += len(comm.encode(algo.downlink(c, ctx)))
                algo.load_global(model)
                batches = client_batches(clients[c], cfg, r, c, pad_id, device)
                with t_local:
                    losses.append(algo.local_train(model, batches, c, ctx))
                    _sync(device)
                with t_encode:
                    blob = comm.encode(algo.encode(model, c, ctx))
                    _sync(device)
                up_bytes += len(blob)
                with t_agg:
                    algo.receive(comm.decode(blob), weights[c] / total_w, ctx)
                del blob
            with t_agg:
                algo.aggregate(ctx)
                _sync(device)
            cum_bytes += up_bytes + down_bytes
            train_loss = sum(losses) / len(losses)
            row = {"run_id": run_id, "method": cfg.method, "round": r, "clients": len(sampled),
                   "train_loss": train_loss, "uplink_bytes": up_bytes, "downlink_bytes": down_bytes,
                   "uplink_bytes_per_client": up_bytes / len(sampled),
                   "downlink_bytes_per_client": down_bytes / len(sampled), "cum_bytes": cum_bytes,
                   "t_local_s": t_local.seconds, "t_encode_s": t_encode.seconds, "t_aggregate_s": t_agg.seconds}
            if not math.isfinite(train_loss):
                row["peak_mem_mb"] = _peak_mem_mb(device)
                log(row)
                raise DivergedError(f"training loss is {train_loss} at round {r}")
            evaluate(r, row)
            row["t_round_s"] = time.perf_counter() - t_round
            row["peak_mem_mb"] = _peak_mem_mb(device)
            log(row)
            progress.update(row)
            last = row
    finally:
        progress.close()
    return {"status": "ok", "rounds": cfg.rounds,
            "initial_eval_loss": first.get("eval_loss"), "initial_rouge_l": first.get("rouge_l"),
            "final_eval_loss": last.get("eval_loss"), "final_rouge_l": last.get("rouge_l"),
            "final_train_loss": last.get("train_loss"), "total_bytes": cum_bytes,
            "uplink_bytes_per_client_per_round": last.get("uplink_bytes_per_client"),
            "downlink_bytes_per_client_per_round": last.get("downlink_bytes_per_client")}
