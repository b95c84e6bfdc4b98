"""``ferret bench server`` and ``ferret bench overhead``: what Ferret's projection costs inside a round.

* Server cost vs clients: folding in N uplinks (decode + ``receive``) and the round's one rebuild
  (``aggregate``), for N sampled clients at fixed K and d (a LLaMA-shaped parameter set,
  :func:`ferret.bench.projection.model_shapes`). The uplinks are real ``encode`` outputs of
  ``distinct`` perturbed copies, reused round-robin (their content does not change the cost).
* Local-step overhead: per round, a client's encode plus the rebuild, as a fraction of its local
  first-order steps: on a random-init LLaMA-shaped model of about d parameters with synthetic
  token batches (:func:`model_overhead`), or on a real run config through the engine, one round
  (:func:`config_overhead`, which reads the engine's own t_local_s / t_encode_s / t_aggregate_s).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ferret import comm
from ferret.algorithms import registry
from ferret.algorithms.base import RoundContext
from ferret.bench.measure import sync
from ferret.bench.projection import model_shapes
from ferret.config import load_config
from ferret.host import Host

SERVER_COLUMNS = ["clients", "d", "K", "basis", "receive_s", "aggregate_s", "server_s", "ratio_to_first"]
OVERHEAD_COLUMNS = ["setting", "d", "K", "basis", "local_steps", "t_local_s", "t_encode_s", "t_rebuild_s",
                    "overhead"]


class _Params(torch.nn.Module):
    """A bare parameter set with the given tensor sizes (no forward: the server never runs one)."""

    def __init__(self, sizes: list[int], device: torch.device) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList(torch.nn.Parameter(0.02 * torch.randn(s, device=device)) for s in sizes)


def _ferret(model: torch.nn.Module, K: int, basis: str, extra: list[str] = ()) -> Any:
    cfg = load_config(None, [f"K={K}", "method=ferret", f"method_options.ferret.basis={basis}", *extra])
    algo = registry.resolve("ferret")(cfg, registry.options_for("ferret", cfg.method_options))
    algo.setup(model, None)
    return algo, cfg


def server_cost(d: int, K: int, clients: list[int], basis: str, device: torch.device,
                distinct: int = 5, repeats: int = 3) -> list[dict[str, Any]]:
    """Seconds of decode + receive for N uplinks and of the one rebuild, per N in `clients`
    (the median of `repeats` rounds, after one warm-up rebuild)."""
    model = _Params(model_shapes(d), device)
    algo, cfg = _ferret(model, K, basis)
    ctx = RoundContext(round=1, rounds=1, seed=cfg.seed, device=device)
    blobs = []
    with torch.no_grad():
        for c in range(distinct):
            for p, g in zip(model.parameters(), algo.global_params.values()):
                p.copy_(g + 1e-3 * torch.randn_like(g))
            blobs.append(comm.encode(algo.encode(model, c, ctx)))
    algo.aggregate(ctx)  # warm-up: the first rebuild pays one-off costs (kernel and page faults)
    rows = []
    for n in clients:
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for c in range(n):
                algo.receive(comm.decode(blobs[c % distinct]), 1.0 / n, ctx)
            t1 = time.perf_counter()
            algo.aggregate(ctx)
            sync(device)
            runs.append((time.perf_counter() - t0, t1 - t0))
        total, receive = sorted(runs)[len(runs) // 2]  # the median round
        rows.append({"clients": n, "d": d, "K": K, "basis": basis, "receive_s": receive,
                     "aggregate_s": total - receive, "server_s": total})
    for row in rows:
        row["ratio_to_first"] = row["server_s"] / rows[0]["server_s"]
    return rows


def llama_for(d: int, device: torch.device) -> torch.nn.Module:
    """A random-init LLaMA of about d parameters: hidden h (a multiple of 64), vocab 64 h (tied),
    4 heads / 2 k-v heads, MLP 2.6875 h, and as many layers as fit (at least one)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    h = 64 * max(1, round(math.sqrt(d / 150) / 64))
    per_layer = 2 * h * h + h * h + 3 * h * (43 * h // 16) + 2 * h
    layers = max(1, round((d - 64 * h * h) / per_layer))
    config = LlamaConfig(vocab_size=64 * h, hidden_size=h, intermediate_size=43 * h // 16, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device)


def model_overhead(d: int, K: int, local_steps: int, basis: str, device: torch.device, batch_size: int = 4,
                   seq_len: int = 64) -> dict[str, Any]:
    """One client round on a LLaMA-shaped model: local steps, encode, and the server's rebuild."""
    model = llama_for(d, device)
    algo, cfg = _ferret(model, K, basis, [f"local_steps={local_steps}", f"batch_size={batch_size}"])
    ctx = RoundContext(round=1, rounds=1, seed=cfg.seed, device=device)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    batches = []
    for _ in range(local_steps):
        ids = torch.randint(0, vocab, (batch_size, seq_len), generator=g).to(device)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    algo.load_global(model)
    t0 = time.perf_counter()
    algo.local_train(model, batches, 0, ctx)
    sync(device)
    t1 = time.perf_counter()
    blob = comm.encode(algo.encode(model, 0, ctx))
    sync(device)
    t2 = time.perf_counter()
    algo.receive(comm.decode(blob), 1.0, ctx)
    algo.aggregate(ctx)
    sync(device)
    t3 = time.perf_counter()
    d_real = sum(p.numel() for p in algo.global_params.values())
    return {"setting": "llama-shaped, synthetic tokens", "d": d_real, "K": K, "basis": basis,
            "local_steps": local_steps, "t_local_s": t1 - t0, "t_encode_s": t2 - t1, "t_rebuild_s": t3 - t2,
            "overhead": (t2 - t1 + t3 - t2) / (t1 - t0)}


def config_overhead(config: str | None, overrides: list[str], host: Host = Host()) -> dict[str, Any]:
    """One round of a real run config through the engine (defaults: the embedded default config);
    the engine's t_encode_s + t_aggregate_s over its t_local_s (all sampled clients). ``host``:
    the resources folder and secrets (ferret/host.py)."""
    import pandas as pd

    from ferret.engine import run

    cfg = load_config(config, ["rounds=1", "wandb_mode=disabled", "checkpoint_every=0", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        record = run(cfg, Path(tmp), host=host)
        row = pd.read_csv(Path(tmp) / "metrics.csv").set_index("round").loc[1]
    d = record.get("model", {}).get("num_parameters", math.nan)
    extra = f" {' '.join(overrides)}" if overrides else ""
    return {"setting": f"run config {config or 'embedded default'}{extra} (1 round, {int(row['clients'])} clients)",
            "d": d, "K": cfg.K, "basis": registry.options_for("ferret", cfg.method_options).basis,
            "local_steps": cfg.local_steps, "t_local_s": row["t_local_s"], "t_encode_s": row["t_encode_s"],
            "t_rebuild_s": row["t_aggregate_s"],
            "overhead": (row["t_encode_s"] + row["t_aggregate_s"]) / row["t_local_s"]}
