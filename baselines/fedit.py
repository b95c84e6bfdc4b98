"""FedIT: federated instruction tuning with LoRA adapters (peft), local AdamW, FedAvg of the adapters.

Zhang et al., "Towards Building the Federated GPT: Federated Instruction Tuning", ICASSP 2024
(arXiv 2305.05644); official code github.com/JayZhang42/FederatedGPT-Shepherd ("Shepherd",
built on tloen/alpaca-lora and peft). The FedKSeed paper (Qin et al., arXiv 2312.06353) uses it
as its LoRA baseline ("FedIT", AdamW) next to FedIT-SGD, FedPTuning and FedPrompt.

This file also holds :class:`PeftFedAvg`, the small base the other peft baselines
(``baselines/fedit_sgd.py``, ``baselines/fedptuning.py``, ``baselines/fedprompt.py``) share:
wrap the model with ``peft.get_peft_model``, keep only the trainable adapter tensors as the global
state, run first-order local steps with a fresh optimizer, and average the adapters (FedAvg).

Per round (Shepherd ``main.py`` / ``fed_utils``):

    server:  send the global adapter A_r (LoRA A and B of every target module) to each sampled client
    client:  load A_r into the wrapped model (base weights frozen, never sent);
             a fresh AdamW runs local_steps micro-batches (one step every n_accum) on the adapter;
             send the client adapter A_i
    server:  A_{r+1} = sum_i p_i A_i   (Shepherd: p_i by local data size; here cfg.equal_weight)

Evaluation (eval loss and Rouge-L) runs on the wrapped model, i.e. the un-merged LoRA model
(base W plus scale * B A computed on the fly), which is numerically the merged model up to float
rounding; nothing is merged into the base weights, so they stay bit-for-bit the pretrained ones.

Deviations from Shepherd:

- Local work is ``local_steps`` micro-batches (the engine's unit for every method), not
  ``local_num_epochs`` epochs of a ``transformers.Trainer``.
- Constant learning rate and ``cfg.grad_clip`` (default off): Shepherd's Trainer uses its defaults,
  a linear decay to 0 within each client's local run and ``max_grad_norm=1.0``. AdamW uses torch's
  betas/eps (the Trainer's defaults too) and ``weight_decay=cfg.weight_decay`` (Trainer default 0).
- No 8-bit loading / fp16 autocast: the model runs in ``cfg.dtype``; peft keeps the adapter in
  float32 (``autocast_adapter_dtype``), so adapters travel as float32.
- Only the trainable tensors travel (peft ``get_peft_model_state_dict`` in Shepherd holds the same
  LoRA A/B tensors; with ``bias="none"`` there are no others).

Options (``method_options.fedit``; defaults are tloen/alpaca-lora's ``finetune.py`` defaults, the
code Shepherd builds on; Shepherd's own ``main.py`` defaults are r=16, alpha=16, q_proj only, and
its README example uses r=8):

    option          default          meaning
    r               8                LoRA rank
    alpha           16               LoRA alpha (scale = alpha / r)
    dropout         0.05             LoRA dropout on the adapter input (training only)
    target_modules  "q_proj,v_proj"  comma-separated module names that get an adapter
    lr              3e-4             local AdamW learning rate (Shepherd/alpaca-lora default);
                                     0 uses cfg.lr
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, PeftConfig, TaskType, get_peft_model

from baselines.fedavg import FedAvg
from ferret.algorithms.base import RoundContext, check_lr_option
from ferret.algorithms.local import first_order_local_steps

OPTIMIZERS = ("sgd", "adamw")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def make_optimizer(kind: str, params: list[torch.nn.Parameter], lr: float, cfg: Any) -> torch.optim.Optimizer:
    """A fresh local optimizer: ``"sgd"`` (cfg.momentum, cfg.weight_decay, as FedAvg/Ferret) or
    ``"adamw"`` (torch defaults for betas/eps, weight_decay=cfg.weight_decay)."""
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer={kind!r}: must be one of {', '.join(OPTIMIZERS)}")


def check_optimizer(kind: str) -> None:
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer={kind!r}: must be one of {', '.join(OPTIMIZERS)}")


class PeftFedAvg(FedAvg):
    """FedAvg over the trainable tensors of a peft-wrapped model.

    Subclasses give the adapter (:meth:`peft_config`) and the local optimizer (an ``optimizer``
    option, else the class attribute :attr:`optimizer`); their Options carry ``lr`` (0 = ``cfg.lr``,
    see :meth:`Algorithm.local_lr`)."""

    name = "peft-fedavg"
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
                                       n_accum=self.cfg.n_accum, grad_clip=self.cfg.grad_clip)


@dataclass(frozen=True)
class FedITOptions:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str = "q_proj,v_proj"
    lr: float = 3e-4

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"r={self.r!r}: must be a positive integer")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"alpha={self.alpha!r}: must be > 0")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout!r}: must be in [0, 1)")
        modules = self.modules()
        if not isinstance(self.target_modules, str) or not modules or not all(_MODULE_NAME.match(m) for m in modules):
            raise ValueError(f"target_modules={self.target_modules!r}: must be comma-separated module names, "
                             "e.g. 'q_proj,v_proj'")
        check_lr_option(self.lr)

    def modules(self) -> list[str]:
        if not isinstance(self.target_modules, str):
            return []
        return [m.strip() for m in self.target_modules.split(",") if m.strip()]


class FedIT(PeftFedAvg):
    name = "fedit"
    Options = FedITOptions
    optimizer = "adamw"

    def peft_config(self, model: torch.nn.Module) -> PeftConfig:
        o = self.options
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout,
                          target_modules=o.modules(), bias="none")
