"""Everything a run needs before its first round, and every check of the input that needs it:
the data, the model and its tokenizer, the tokenised clients and eval set, the set-up method.
Nothing here writes to the run folder, so bad input found here leaves it untouched."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ferret import precision
from ferret.algorithms import registry
from ferret.algorithms.base import Algorithm
from ferret.config import ConfigError, RunConfig
from ferret.data.prompts import prompt_ids, tokenize_example
from ferret.data.registry import load_federated_data
from ferret.data.types import DataError, FederatedData
from ferret.evaluation import EvalSet
from ferret.host import Host
from ferret.models import load_model_and_tokenizer
from ferret.seeding import derive_seed

__all__ = ["Setup", "check_k", "load_base", "prepare"]


@dataclass
class Setup:
    """A run's prepared inputs (:func:`prepare`)."""

    algo: Algorithm  # set up: it holds the global state
    model: torch.nn.Module  # the one working copy the clients train and the evaluations score
    tokenizer: Any
    clients: list[list[dict[str, list[int]]]]  # each client's tokenised training examples
    ev: EvalSet


def check_k(cfg: RunConfig, params: Iterable[torch.Tensor], what: str) -> None:
    """K larger than the trainable parameters of ``what`` is bad input."""
    n = sum(p.numel() for p in params)
    if n < cfg.K:
        raise ConfigError(f"K={cfg.K}: larger than the {n} trainable parameters of {what}")


def load_base(cfg: RunConfig, record: dict[str, Any],
              host: Host) -> tuple[torch.nn.Module, Any, FederatedData, EvalSet]:
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


def prepare(cfg: RunConfig, record: dict[str, Any], host: Host) -> Setup:
    """Model, data, tokenised clients and eval set, and the set-up method: every check of the input
    that needs them (K, empty clients, max_length) fails here, before the run folder is touched."""
    algo_cls = registry.resolve(cfg.method, cfg.trust_custom_method)
    options = registry.options_for(cfg.method, cfg.method_options, cfg.trust_custom_method)
    model, tokenizer, data, ev = load_base(cfg, record, host)
    # Before setup too: a full-parameter method would allocate K-sized state first.
    check_k(cfg, (p for p in model.parameters() if p.requires_grad), f"model={cfg.model!r}")
    empty = [i for i, c in enumerate(data.clients) if not c]
    if empty:
        raise DataError(f"client {empty[0]} of dataset={cfg.dataset!r} has no training data "
                        f"({len(empty)} of {len(data.clients)} clients are empty)")
    clients = [[tokenize_example(tokenizer, ex, cfg.max_length) for ex in c] for c in data.clients]
    record["data"] = {"name": data.name, "clients": len(clients), "client_tasks": data.client_tasks,
                      "train_examples": sum(map(len, clients)), "eval_examples": len(ev.examples)}
    algo: Algorithm = algo_cls(cfg, options)
    model = algo.setup(model, tokenizer)
    check_k(cfg, algo.global_params.values(), f"method={cfg.method!r} on model={cfg.model!r}")
    return Setup(algo, model, tokenizer, clients, ev)
