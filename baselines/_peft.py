"""The base the peft baselines share (FedIT, FedIT-SGD, FedPTuning, FedPrompt): wrap the model with
``peft.get_peft_model``, keep only the trainable adapter tensors as the global state, run
first-order local steps with a fresh optimizer, and average the adapters (FedAvg). Its own module
so that no method file imports another method's file."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from peft import PeftConfig, get_peft_model

from baselines.fedavg import FedAvg
from ferret.algorithms.base import RoundContext
from ferret.algorithms.local import first_order_local_steps
from ferret.methods._checks import OPTIMIZERS


def make_optimizer(kind: str, params: list[torch.nn.Parameter], lr: float, cfg: Any) -> torch.optim.Optimizer:
    """A fresh local optimizer: ``"sgd"`` (cfg.momentum, cfg.weight_decay, as FedAvg/Ferret) or
    ``"adamw"`` (torch defaults for betas/eps, weight_decay=cfg.weight_decay)."""
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer={kind!r}: must be one of {', '.join(OPTIMIZERS)}")


class PeftFedAvg(FedAvg):
    """FedAvg over the trainable tensors of a peft-wrapped model.

    Subclasses give the adapter (:meth:`peft_config`) and the local optimizer (an ``optimizer``
    option, else the class attribute :attr:`optimizer`); their Options carry ``lr`` (0 = ``cfg.lr``,
    see :meth:`Algorithm.local_lr`)."""

    optimizer = "adamw"

    def peft_config(self, model: torch.nn.Module) -> PeftConfig:
        raise NotImplementedError

    def make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """A fresh optimizer every round and client (Shepherd builds a new Trainer per client)."""
        kind = getattr(self.options, "optimizer", self.optimizer)  # an option where the method has one
        return make_optimizer(kind, params, self.local_lr(), self.cfg)

    def setup(self, model: torch.nn.Module, tokenizer: object) -> torch.nn.Module:
        """Wrap with peft (which freezes the base weights); the global state is the adapter only."""
        wrapped = get_peft_model(model, self.peft_config(model))
        return super().setup(wrapped, tokenizer)

    def local_train(self, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    client: int, ctx: RoundContext) -> float:
        params = [p for _, p in self.trainable(model)]
        return first_order_local_steps(model, params, batches, self.make_optimizer(params),
                                       n_accum=self.cfg.n_accum, grad_clip=self.cfg.grad_clip,
                                       scaler=self.grad_scaler(ctx.device), lost=self.lost_local)
