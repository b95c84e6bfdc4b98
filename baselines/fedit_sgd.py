"""FedIT-SGD: FedIT (LoRA adapters via peft, FedAvg of the adapters) with local SGD instead of AdamW.

The variant introduced as a baseline by the FedKSeed paper (Qin et al., "Federated Full-Parameter
Tuning of Billion-Sized Language Models with Communication Cost under 18 Kilobytes", ICML 2024,
arXiv 2312.06353): FedIT (Zhang et al., ICASSP 2024, arXiv 2305.05644, code
github.com/JayZhang42/FederatedGPT-Shepherd) with AdamW replaced by SGD, which separates the effect
of the optimizer from that of the LoRA parameterisation when comparing with SGD-based methods
(FedAvg, Ferret) and zeroth-order ones (FedKSeed).

Per round (identical to baselines/fedit.py except the optimizer):

    server:  send the global LoRA adapter A_r to each sampled client
    client:  load A_r; a fresh torch SGD (cfg.momentum, cfg.weight_decay; official FedAvg/Ferret
             loop: no momentum) runs local_steps micro-batches on the adapter; send A_i
    server:  A_{r+1} = sum_i p_i A_i

Deviations: those of baselines/fedit.py. Rouge-L and eval loss use the un-merged wrapped model.

Options (``method_options.fedit-sgd``): those of FedIT (r=8, alpha=16, dropout=0.05,
target_modules="q_proj,v_proj") except the default ``lr``:

    option  default  meaning
    lr      0        local SGD learning rate; 0 uses cfg.lr, the SGD learning rate shared with
                     FedAvg and Ferret (FedIT's 3e-4 is an AdamW rate, far too small for SGD)
"""

from __future__ import annotations

from baselines.fedit import FedIT


class FedITSGD(FedIT):
    optimizer = "sgd"
