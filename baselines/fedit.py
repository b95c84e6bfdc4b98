"""FedIT: federated instruction tuning with LoRA adapters (peft), local AdamW, FedAvg of the adapters.

Zhang et al., "Towards Building the Federated GPT: Federated Instruction Tuning", ICASSP 2024
(arXiv 2305.05644); official code github.com/JayZhang42/FederatedGPT-Shepherd ("Shepherd",
built on tloen/alpaca-lora and peft). The FedKSeed paper (Qin et al., arXiv 2312.06353) uses it
as its LoRA baseline ("FedIT", AdamW) next to FedIT-SGD, FedPTuning and FedPrompt.

Built on :class:`baselines._peft.PeftFedAvg`, the base all peft baselines share.

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

import torch
from peft import LoraConfig, PeftConfig, TaskType

from baselines._peft import PeftFedAvg


class FedIT(PeftFedAvg):
    optimizer = "adamw"

    def peft_config(self, model: torch.nn.Module) -> PeftConfig:
        o = self.options
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout,
                          target_modules=o.modules(), bias="none")
