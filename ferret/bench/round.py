"""``ferret bench round``: one federated round per method at a paper model size, in the shape of the
paper's Tables 4 (seconds per round) and 6 (peak memory), with the paper's numbers beside ours.

The model is a random-init ``LlamaForCausalLM`` built from an architecture config only (no weights
can be downloaded, and values do not change speed): ``llama-3b`` is open_llama_3b's shape,
``llama2-13b`` Llama-2-13b-hf's (for GPUs), ``cpu-mid`` a 0.44 B-parameter LLaMA for a CPU run at a
size where model copies dominate memory; ``small`` and ``tiny`` are scaled-down LLaMAs for quick CPU
runs and tests. The data are random token sequences of one length (the paper times at batch size 1).

Each method goes through the registry and the engine's own round,
:func:`ferret.federated_round.federated_round`, for one sampled client (downlink, ``load_global``,
``local_train``, ``encode``, ``receive`` + ``aggregate``, with its timers and device syncs), on the
engine's batches (``client_batches``). Columns follow the paper's definitions (appendix C.2):
local = local training + encode (the projection counts as local update), aggregation = decode +
receive + aggregate, overall = local + aggregation, all per client.
Peak memory is the engine's per-round figure: on CUDA ``max_memory_allocated`` after resetting it at
the round's start; on CPU the process's resident high-water mark over the round (reset at its start,
so it includes the model, the global copy and the interpreter). ``peak_extra_gb`` is that peak less
the memory in use when the round starts (the model alone is resident then): what the method's own
state, gradients and activations add, the part that separates the methods in Table 6.
``device_extra_P`` and ``host_extra_P`` give that extra peak in units of P, one model-sized copy in
the model's dtype, on the compute device and in host memory (the process's resident set); on CPU the
two are one memory and equal. ``bookkeeping_s`` = encode + aggregation, beside ``train_s`` (local
training alone): the methods' cost beyond the training itself.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ferret.algorithms import registry
from ferret.algorithms.base import RoundContext
from ferret.batches import client_batches
from ferret.bench.measure import memory_now_mb, peak_since_reset_mb, reset_peak
from ferret.config import ConfigError, load_config
from ferret.federated_round import federated_round, sync

# LlamaConfig keyword arguments. llama-3b: openlm-research/open_llama_3b's config.json.
PRESETS: dict[str, dict[str, Any]] = {
    "llama-3b": {"hidden_size": 3200, "num_hidden_layers": 26, "num_attention_heads": 32,
                 "num_key_value_heads": 32, "intermediate_size": 8640, "vocab_size": 32000,
                 "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False},
    # llama-3b scaled down ~1200x in parameters (hidden / 25, layers / 6.5, vocab / 4) so that the
    # four methods' rounds (FedKSeed and FedZO: 200 zeroth-order steps, 400 forwards each) finish
    # well inside 2 min on 2 shared cores (21 s with one torch thread, docs/performance.md).
    "small": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 4, "intermediate_size": 344, "vocab_size": 8000,
              "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False},
    # ~0.44 B parameters (P = 1.63 GiB in float32): large enough that copies of the model dominate
    # the process's memory, small enough for one CPU round per method in minutes.
    "cpu-mid": {"hidden_size": 1024, "num_hidden_layers": 29, "num_attention_heads": 16,
                "num_key_value_heads": 16, "intermediate_size": 2816, "vocab_size": 32000,
                "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False},
    # meta-llama/Llama-2-13b-hf's config.json (13.0 B parameters).
    "llama2-13b": {"hidden_size": 5120, "num_hidden_layers": 40, "num_attention_heads": 40,
                   "num_key_value_heads": 40, "intermediate_size": 13824, "vocab_size": 32000,
                   "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False},
    "tiny": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": 256,
             "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "tie_word_embeddings": False},
}
# The paper model whose rows of the reference tables sit beside each preset (the scaled-down ones
# too: the point of comparison is the multiples between methods, not the absolute seconds).
PAPER_MODEL = "llama-3b"
PAPER_TABLE = "Table 4"

# What a preset runs unless the command line says otherwise: (methods, dtype, seq_len).
PRESET_DEFAULTS: dict[str, tuple[str, str, int]] = {
    "llama-3b": ("ferret:10,fedkseed:200,fedzo:200,fedavg:10", "float32", 64),
    "llama2-13b": ("ferret:2,fedavg:2,fedzo:2,fedkseed:2,fedit:2", "bfloat16", 512),
    "cpu-mid": ("ferret:2,fedavg:2,fedzo:2,fedkseed:2,fedit:2", "float32", 64),
    "small": ("ferret:10,fedkseed:200,fedzo:200,fedavg:10", "float32", 64),
    "tiny": ("ferret:10,fedkseed:200,fedzo:200,fedavg:10", "float32", 64),
}

COLUMNS = ["method", "model", "d", "steps", "K", "train_s", "local_s", "encode_s", "aggregation_s", "overall_s",
           "bookkeeping_s", "bookkeeping_x_train", "P_gib", "device_extra_P", "host_extra_P",
           "peak_mem_gb", "peak_extra_gb", "uplink_bytes", "downlink_bytes", "paper_local_s", "paper_aggregation_s",
           "paper_overall_s", "paper_peak_mem_gb", "overall_x_ferret", "paper_overall_x_ferret"]


@dataclass(frozen=True)
class MethodSpec:
    """One method's round: its registry name, local steps and seed count (K, where it has one)."""

    method: str
    steps: int
    K: int


def parse_methods(text: str, k_of: dict[str, int]) -> list[MethodSpec]:
    """'ferret:10,fedkseed:200' -> specs; K from k_of (methods without one get the config's)."""
    specs = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, _, steps = item.partition(":")
        try:
            registry.check_name(name)
        except registry.UnknownMethodError as e:
            raise ConfigError(f"--methods item {item!r}: {e}") from None
        try:
            n = int(steps)
        except ValueError:
            raise ConfigError(f"--methods item {item!r}: expected method:steps, e.g. ferret:10") from None
        if n < 1:
            raise ConfigError(f"--methods item {item!r}: steps must be >= 1")
        specs.append(MethodSpec(name, n, k_of.get(name, 0)))
    if not specs:
        raise ConfigError(f"--methods {text!r}: no method given")
    return specs


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: choose from {', '.join(PRESETS)}")


def build_model(preset: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A random-init LLaMA of the preset's architecture on device (seeded: the same weights every run)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    check_preset(preset)
    default = torch.get_default_dtype()
    try:  # allocate on the device directly, in the run's dtype: a 13B model need not pass through RAM or float32
        torch.set_default_dtype(dtype)
        with torch.device(device):
            torch.manual_seed(0)
            model = LlamaForCausalLM(LlamaConfig(**PRESETS[preset], torch_dtype=dtype)).to(dtype)
    finally:
        torch.set_default_dtype(default)
    return model


def synthetic_client(vocab: int, n: int, seq_len: int) -> list[dict[str, list[int]]]:
    """n tokenised examples of seq_len random tokens (labels = inputs), the engine's client format."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (n, seq_len), generator=g).tolist()
    return [{"input_ids": row, "labels": row} for row in ids]


def _algorithm(spec: MethodSpec, steps: int, overrides: Iterable[str]) -> tuple[Any, Any]:
    """The registry's method, configured as a run of the embedded default config would be."""
    extra = [f"K={spec.K}"] if spec.K else []
    cfg = load_config(None, [f"method={spec.method}", f"local_steps={steps}", "batch_size=1", *extra, *overrides])
    return registry.resolve(cfg.method)(cfg, registry.options_for(cfg.method, cfg.method_options)), cfg


def one_round(spec: MethodSpec, model: torch.nn.Module, data: list[dict[str, list[int]]], device: torch.device,
              overrides: Iterable[str] = (), steps: int | None = None) -> dict[str, Any]:
    """One round of spec.method for one client, as the engine runs it (spec.steps local steps unless
    steps is given); the phases' seconds, the messages' bytes and the round's peak memory."""
    host = torch.device("cpu")
    p_mb = sum(t.numel() * t.element_size() for t in model.parameters()) / 2**20  # P: one model copy
    sync(device)
    # The window opens before setup: the method's global copy and state count, the model does not.
    reset_peak(device)
    if device.type != "cpu":
        reset_peak(host)
    before, host_before = memory_now_mb(device), memory_now_mb(host)
    algo, cfg = _algorithm(spec, spec.steps if steps is None else steps, overrides)
    model = algo.setup(model, None)
    ctx = RoundContext(round=1, rounds=1, seed=cfg.seed, device=device)
    batches = client_batches(data, cfg, 1, 0, 0, device)  # one length: no padding
    done = federated_round(algo, model, [0], [1.0], lambda c: batches, ctx)
    peak = peak_since_reset_mb(device)
    host_extra = peak - before if device.type == "cpu" else peak_since_reset_mb(host) - host_before
    local = done.t_local_s + done.t_encode_s
    bookkeeping = done.t_encode_s + done.t_aggregate_s
    return {"method": spec.method, "d": sum(t.numel() for t in algo.global_params.values()), "steps": len(batches),
            "K": cfg.K if spec.K else "", "train_s": done.t_local_s, "local_s": local, "encode_s": done.t_encode_s,
            "aggregation_s": done.t_aggregate_s, "overall_s": local + done.t_aggregate_s,
            "bookkeeping_s": bookkeeping, "bookkeeping_x_train": bookkeeping / max(done.t_local_s, 1e-12),
            "P_gib": p_mb / 1024, "device_extra_P": (peak - before) / p_mb, "host_extra_P": host_extra / p_mb,
            "peak_mem_gb": peak / 1024, "peak_extra_gb": (peak - before) / 1024,
            "uplink_bytes": done.uplink_bytes, "downlink_bytes": done.downlink_bytes}


def paper_columns(rows: list[dict[str, Any]], reference: Path) -> None:
    """Add the paper's Table 4 seconds and Table 6 peak memory (LLaMA-3B rows) to each row, in place;
    a method the paper does not list gets NaN."""
    cost = pd.read_csv(reference / "cost_per_round.csv")
    cost = cost[(cost["table"] == PAPER_TABLE) & (cost["model"] == PAPER_MODEL)].set_index("method")
    memory = pd.read_csv(reference / "table6_peak_memory.csv")
    memory = memory[memory["model"] == PAPER_MODEL].set_index("method")
    for row in rows:
        m = row["method"]
        for col in ("local_s", "aggregation_s", "overall_s"):
            row[f"paper_{col}"] = float(cost.loc[m, col]) if m in cost.index else math.nan
        row["paper_peak_mem_gb"] = float(memory.loc[m, "peak_gpu_gb"]) if m in memory.index else math.nan
    ours = {r["method"]: r["overall_s"] for r in rows}
    for row in rows:
        row["overall_x_ferret"] = row["overall_s"] / ours["ferret"] if "ferret" in ours else math.nan
        paper_ferret = float(cost.loc["ferret", "overall_s"]) if "ferret" in cost.index else math.nan
        row["paper_overall_x_ferret"] = row["paper_overall_s"] / paper_ferret


def run_round_bench(preset: str, specs: list[MethodSpec], device: torch.device, dtype: torch.dtype, seq_len: int,
                    reference: Path, overrides: Iterable[str] = (), warmup: bool = True) -> list[dict[str, Any]]:
    """One round of every method in specs on a fresh copy of the preset model (after an untimed
    one-step warm-up round unless warmup is False); rows in COLUMNS."""
    if seq_len < 2:
        raise ConfigError(f"--seq-len {seq_len}: must be >= 2 (a causal LM needs a next token)")
    rows = []
    for spec in specs:
        model = build_model(preset, device, dtype)
        data = synthetic_client(model.config.vocab_size, spec.steps, seq_len)
        if warmup:
            # An untimed one-step round first, as a long run's later rounds are: one-off costs (kernel
            # loading, the allocator's first requests, lazy initialisation) are not the method's.
            one_round(spec, model, data, device, overrides, steps=1)
            gc.collect()  # its global copy goes before the timed round's peak window opens
        rows.append({"model": preset, **one_round(spec, model, data, device, overrides)})
        del model
        gc.collect()  # free this method's model and global copy before the next one's round
        if device.type == "cuda":
            torch.cuda.empty_cache()
    paper_columns(rows, reference)
    return rows
