"""FedPTuning (P-tuning): options and registration; implementation (and the options' meaning)
in baselines/fedptuning.py."""

from __future__ import annotations

from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods._checks import check_choice, check_fraction, check_lr_option, check_optimizer, check_virtual_tokens

REPARAMETERIZATIONS = ("MLP", "LSTM")


@dataclass(frozen=True)
class FedPTuningOptions:
    num_virtual_tokens: int = 20
    encoder_reparameterization_type: str = "MLP"
    encoder_hidden_size: int = 0
    encoder_dropout: float = 0.1
    optimizer: str = "sgd"
    lr: float = 0.0

    def __post_init__(self) -> None:
        check_virtual_tokens(self.num_virtual_tokens)
        check_choice("encoder_reparameterization_type", self.encoder_reparameterization_type, REPARAMETERIZATIONS)
        h = self.encoder_hidden_size
        if isinstance(h, bool) or not isinstance(h, int) or h < 0:
            raise ValueError(f"encoder_hidden_size={h!r}: must be an integer >= 0 (0 = the model's hidden size)")
        check_fraction("encoder_dropout", self.encoder_dropout)
        check_optimizer(self.optimizer)
        check_lr_option(self.lr)


register("fedptuning", FedPTuningOptions, "baselines.fedptuning:FedPTuning")
