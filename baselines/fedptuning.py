"""FedPTuning: federated P-tuning (peft ``PromptEncoderConfig``), FedAvg of the prompt encoder.

P-tuning: Liu et al., "GPT Understands, Too" (2021, arXiv 2103.10385): trainable continuous prompt
embeddings, re-parameterised by a small encoder (MLP or LSTM), prepended to the input of a frozen
LM. Federated as in FederatedScope-LLM (Kuang et al., arXiv 2309.00363; FS-LLM's peft "p-tuning"
adapter) and used as the "FedPTuning" baseline of the FedKSeed paper (Qin et al., arXiv 2312.06353).

Per round:

    server:  send the global prompt encoder E_r (virtual-token embedding + MLP head) to each
             sampled client
    client:  load E_r into the wrapped model (base weights frozen, never sent); a fresh optimizer
             (SGD by default) runs local_steps micro-batches on E; send E_i
    server:  E_{r+1} = sum_i p_i E_i

The wrapped model prepends ``num_virtual_tokens`` encoder outputs to every input (labels -100
there). Evaluation runs on the wrapped model: eval loss scores only the input positions
(ferret/metrics.py), and generation (ferret/generation.py) builds each left-padded batch as
``[padding, virtual tokens, prompt]``, because peft ignores position_ids for prompt learning and
padding between the virtual tokens and the prompt would move the prompt away from them.

Deviations: local work is ``local_steps`` micro-batches with a constant learning rate (FS-LLM
counts ``local_update_steps`` batches too); the encoder, as in peft, is float32 and travels as
float32. The optimizer default is SGD, FS-LLM's default trainer optimizer
(``cfg.train.optimizer.type = 'SGD'`` in federatedscope/core/configs); FedKSeed's authors are
FS-LLM's, but we could not confirm from the paper which optimizer and learning rate they used for
this baseline, so ``optimizer`` is an option and the default learning rate is the run's ``lr``.

Options (``method_options.fedptuning``; defaults from FS-LLM's README example for P-tuning:
``encoder_reparameterization_type='MLP', encoder_dropout=0.1, num_virtual_tokens=20``):

    option                            default  meaning
    num_virtual_tokens                20       prompt length prepended to every input
    encoder_reparameterization_type   "MLP"    "MLP" or "LSTM" (peft PromptEncoder)
    encoder_hidden_size               0        encoder width; 0 = the model's hidden size (peft default)
    encoder_dropout                   0.1      dropout inside the encoder (training only)
    optimizer                         "sgd"    local optimizer: "sgd" or "adamw"
    lr                                0        local learning rate; 0 uses cfg.lr
"""

from __future__ import annotations

import torch
from peft import PeftConfig, PromptEncoderConfig, TaskType

from baselines._peft import PeftFedAvg


class FedPTuning(PeftFedAvg):

    def peft_config(self, model: torch.nn.Module) -> PeftConfig:
        o = self.options
        return PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=o.num_virtual_tokens,
                                   encoder_reparameterization_type=o.encoder_reparameterization_type,
                                   encoder_hidden_size=o.encoder_hidden_size or None,
                                   encoder_dropout=o.encoder_dropout)
