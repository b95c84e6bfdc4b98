"""FedPrompt (prompt tuning): options and registration; implementation (and the options' meaning)
in baselines/fedprompt.py."""

from __future__ import annotations

from dataclasses import dataclass

from ferret.algorithms.registry import register
from ferret.methods._checks import check_choice, check_lr_option, check_optimizer, check_virtual_tokens

INITS = ("random", "sample_vocab")  # peft PromptTuningInit RANDOM, SAMPLE_VOCAB


@dataclass(frozen=True)
class FedPromptOptions:
    num_virtual_tokens: int = 20
    init: str = "random"
    optimizer: str = "sgd"
    lr: float = 0.0

    def __post_init__(self) -> None:
        check_virtual_tokens(self.num_virtual_tokens)
        check_choice("init", self.init, INITS)
        check_optimizer(self.optimizer)
        check_lr_option(self.lr)


register("fedprompt", FedPromptOptions, "baselines.fedprompt:FedPrompt")
