"""FedPrompt: federated prompt tuning (peft ``PromptTuningConfig``), FedAvg of the soft prompt.

Prompt tuning: Lester et al., "The Power of Scale for Parameter-Efficient Prompt Tuning", EMNLP 2021
(arXiv 2104.08691): a trainable matrix of ``num_virtual_tokens`` embeddings prepended to the input
of a frozen LM. Federated as in FederatedScope-LLM (Kuang et al., arXiv 2309.00363; FS-LLM's peft
"prompt" adapter) and used as the "FedPrompt" baseline of the FedKSeed paper (Qin et al.,
arXiv 2312.06353).

Per round:

    server:  send the global soft prompt P_r (num_virtual_tokens x hidden) to each sampled client
    client:  load P_r into the wrapped model (base weights frozen, never sent); a fresh optimizer
             (SGD by default) runs local_steps micro-batches on P; send P_i
    server:  P_{r+1} = sum_i p_i P_i

Evaluation runs on the wrapped model: eval loss scores only the input positions
(ferret/metrics.py), and generation (ferret/generation.py) builds each left-padded batch as
``[padding, virtual tokens, prompt]``, because peft ignores position_ids for prompt learning and
padding between the virtual tokens and the prompt would move the prompt away from them.

Deviations: local work is ``local_steps`` micro-batches with a constant learning rate; the prompt
is float32 and travels as float32. Optimizer and learning rate as in baselines/fedptuning.py
(SGD, FS-LLM's default; FedKSeed's optimizer and learning rate for this baseline are not confirmed,
so ``optimizer`` is an option and the default learning rate is the run's ``lr``).
With ``init="random"`` (FS-LLM's choice) peft draws the prompt from N(0, 1), far larger than
typical word embeddings, so the round-0 model already differs from the base model;
``init="sample_vocab"`` starts from rows of the model's own embedding matrix instead.

Options (``method_options.fedprompt``; defaults from FS-LLM's README example for prompt tuning:
``prompt_tuning_init='RANDOM', num_virtual_tokens=20``):

    option               default   meaning
    num_virtual_tokens   20        soft-prompt length
    init                 "random"  "random" (peft RANDOM) or "sample_vocab" (peft SAMPLE_VOCAB)
    optimizer            "sgd"     local optimizer: "sgd" or "adamw"
    lr                   0         local learning rate; 0 uses cfg.lr
"""

from __future__ import annotations

import torch
from peft import PeftConfig, PromptTuningConfig, PromptTuningInit, TaskType

from baselines._peft import PeftFedAvg

_INITS = {"random": PromptTuningInit.RANDOM, "sample_vocab": PromptTuningInit.SAMPLE_VOCAB}


class FedPrompt(PeftFedAvg):

    def peft_config(self, model: torch.nn.Module) -> PeftConfig:
        o = self.options
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=o.num_virtual_tokens,
                                  prompt_tuning_init=_INITS[o.init])
