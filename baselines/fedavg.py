"""FedAvg: full-parameter local SGD, full weights down and up, weighted averaging.

McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
AISTATS 2017 (arXiv 1602.05629); the first-order full-parameter baseline of the Ferret paper
(Shu et al., arXiv 2409.06277, Table 1). Per round:

    server:  send w_r to each sampled client
    client:  w_i <- local SGD steps from w_r (same local loop as Ferret); send w_i
    server:  w_{r+1} = sum_i p_i w_i,  p_i equal (official --equal_weight) or by data size

The server's lost-update fraction (ferret/precision.py): of the entries whose float32 average
of the clients' weights differs from the old global weight, those whose average in the model's
dtype does not.

Deviation: none in the algorithm. Weights travel in the model's dtype (float32 on CPU here),
so the message is the full trainable state, as in the paper's communication comparison.

Memory: the server holds the global weights (model dtype) and the running sum (float32, whatever
the model's dtype), both on the store device (the host by default, ferret/algorithms/base.py); an
uplink's tensors are folded in one at a time, so the server never holds a whole second copy of a
client's weights. The downlink is the same message for every client of a round.
"""

from __future__ import annotations

import torch

from ferret.algorithms.base import Algorithm, RoundContext
from ferret.comm import Message


class FedAvg(Algorithm):
    shared_downlink = True

    def setup(self, model: torch.nn.Module, tokenizer: object) -> torch.nn.Module:
        model = super().setup(model, tokenizer)
        self._sum: dict[str, torch.Tensor] = {}  # running sum_i p_i w_i of the round
        return model

    def downlink(self, client: int, ctx: RoundContext) -> Message:
        return Message(dict(self.global_params))

    def encode(self, model: torch.nn.Module, client: int, ctx: RoundContext) -> Message:
        return Message({n: p.detach() for n, p in self.trainable(model)})

    @torch.no_grad()
    def receive(self, msg: Message, weight: float, ctx: RoundContext) -> None:
        if not self._sum:
            self._sum = {n: self.server_zeros(g) for n, g in self.global_params.items()}
        for name, acc in self._sum.items():
            acc.add_(msg.tensors[name].to(acc.device, torch.float32), alpha=weight)

    @torch.no_grad()
    def aggregate(self, ctx: RoundContext) -> None:
        for name, g in self.global_params.items():
            self.lost_server.observe_values(g, self._sum[name], self._sum[name].to(g.dtype))
            g.copy_(self._sum[name])
        self._sum = {}
