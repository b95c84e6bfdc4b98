"""FedZO: federated zeroth-order local steps, full update communicated.

Fang et al., "Communication-Efficient Stochastic Zeroth-Order Optimization for Federated
Learning", IEEE Transactions on Signal Processing 70, 2022 (arXiv 2201.09531). No official code
is followed (none is used here): the paper's algorithm (local ZO-SGD steps, b2 directions per
step, model averaging), by default with the two-point Gaussian estimator of MeZO and FedKSeed so
that the zeroth-order baselines differ only in what they communicate; the paper's own
forward-difference, unit-sphere estimator is behind options (below). Per round r:

    server:   send w_r to each sampled client                     (as FedAvg)
    client i: w <- w_r
              for each local micro-batch B (one ZO step each):
                  for j = 1..n_perturb:  z_j ~ N(0, I) over all trainable parameters
                      g_j = (L(w + mu z_j; B) - L(w - mu z_j; B)) / (2 mu)         (central)
                  w <- w - lr * (1/n_perturb) sum_j g_j z_j
              send w_i                                            (full weights, as FedAvg)
    server:   w_{r+1} = sum_i p_i w_i                             (FedAvg.receive/aggregate)

The server side and both messages are FedAvg's (this class subclasses it); only the local work
differs. Everything runs under ``torch.no_grad()``: no autograd graph, no ``.grad`` tensors.

Options:

| option     | default   | meaning                                                                   |
|------------|-----------|---------------------------------------------------------------------------|
| mu         | 1e-3      | perturbation scale                                                        |
| n_perturb  | 1         | directions per step (the paper's b2)                                      |
| estimator  | central   | central: (L+ - L-)/(2 mu), 2 forwards per direction;                      |
|            |           | forward (paper): (L(w + mu z) - L(w))/mu, 1 + n_perturb forwards per step |
| direction  | gaussian  | gaussian: z ~ N(0, I);  sphere (paper): z uniform on the sphere of radius |
|            |           | sqrt(d), i.e. E[z z^T] = I like the Gaussian                              |
| lr         | 0         | this method's step size; 0 uses the run's ``lr``. Zeroth-order steps move |
|            |           | every weight along z, so they need a far smaller lr than first-order SGD  |
|            |           | (FedKSeed's scripts: 3e-7); the shared lr 1e-3 diverges on SmolLM2        |
| z_buffer   | tensor    | tensor: z drawn tensor by tensor for each of its uses (one tensor's z in  |
|            |           | memory); model: the seed's z kept whole, drawn once (+1 model-sized       |
|            |           | buffer, ~2.5x faster steps on CPU). Same numbers (Direction, _zeroth_order)|

``estimator=forward, direction=sphere`` is the paper's estimator (d/mu' [f(x + mu' v) - f(x)] v,
v on the unit sphere) with mu' = mu sqrt(d).

Deviations and choices (the engine's shared config keys):
- ``n_accum`` is ignored: every micro-batch is one ZO step (as FedKSeed's official code; the
  paper's mini-batch b1 is ``batch_size``).
- ``momentum`` is ignored (plain ZO-SGD, as in the paper).
- ``weight_decay`` is applied as in MeZO/FedKSeed's official optimizer: w <- w - lr wd w on every
  tensor whose name contains none of "bias", "layer_norm", "layernorm".
- ``grad_clip`` > 0 follows FedKSeed's official ZO semantics (its ``--grad_clip``), not a norm
  clip: a direction whose loss difference exceeds it is dropped (g_j = 0). A direction with a
  non-finite loss is dropped too; if no loss of the round is finite the returned loss is NaN,
  so the engine reports divergence.
- The training loss returned is the mean over steps and directions of (L+ + L-)/2 (central) or
  of L(w) (forward).
- Restoring w after a perturbation adds and subtracts mu z in place (MeZO): w drifts from the
  exact value by rounding only, and no second parameter copy is needed.

Random streams: direction j of step s of client c in round r uses a generator on the
parameters' device seeded with ``derive_seed(seed, "fedzo", r, c, s, j)``. Memory: by default no
direction is stored: each is drawn tensor by tensor, in place, from its seed for every use (perturb,
restore, update: four draws per step with the central estimator, as FedKSeed's official optimizer),
so the client holds one tensor's z at a time (``z_buffer=model`` keeps the seed's z whole instead:
one draw per direction, +1 model-sized buffer, the same numbers); the server holds the global
weights and a float32 running sum, on the host under ``offload=host`` (ferret/algorithms/base.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from baselines._zeroth_order import Direction, batch_loss, weight_decay_
from baselines.fedavg import FedAvg
from ferret.algorithms.base import RoundContext
from ferret.seeding import derive_seed

# -- FedZO -----------------------------------------------------------------------------------------


class FedZO(FedAvg):

    def setup(self, model: torch.nn.Module, tokenizer: object) -> torch.nn.Module:
        model = super().setup(model, tokenizer)
        self.direction = Direction(list(self.global_params.items()), self.compute_device,
                                   sphere=self.options.direction == "sphere", buffer=self.options.z_buffer)
        return model

    @torch.no_grad()
    def local_train(self, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    client: int, ctx: RoundContext) -> float:
        cfg, o, z = self.cfg, self.options, self.direction
        lr = self.local_lr()
        named = self.trainable(model)
        names, params = [n for n, _ in named], [p for _, p in named]
        if names != z.names:
            raise ValueError("the model's trainable parameters differ from those seen in setup")
        mu, n = o.mu, o.n_perturb
        model.eval()  # ZO needs deterministic forwards: no dropout between the two evaluations
        losses: list[float] = []
        for step, batch in enumerate(batches):
            seeds = [derive_seed(cfg.seed, "fedzo", ctx.round, client, step, j) for j in range(n)]
            base = batch_loss(model, batch) if o.estimator == "forward" else None
            if base is not None and torch.isfinite(base):
                losses.append(base.item())
            grads: list[float] = []
            for seed in seeds:
                z.add_to(params, seed, mu)
                plus = batch_loss(model, batch)
                if base is None:
                    z.add_to(params, seed, -2 * mu)
                    minus = batch_loss(model, batch)
                    z.add_to(params, seed, mu)
                    diff, scale = plus - minus, 2 * mu
                    if torch.isfinite(diff):
                        losses.append(((plus + minus) / 2).item())
                else:
                    z.add_to(params, seed, -mu)
                    diff, scale = plus - base, mu
                ok = bool(torch.isfinite(diff))
                if ok and cfg.grad_clip > 0 and abs(diff.item()) > cfg.grad_clip:
                    ok = False  # official --grad_clip: drop an over-large loss difference
                grads.append((diff / scale).item() if ok else 0.0)
            for seed, g in zip(seeds, grads):
                if g != 0.0:
                    z.add_to(params, seed, -lr * g / n, self.lost_local)
            weight_decay_(params, names, lr, cfg.weight_decay)
        return sum(losses) / len(losses) if losses else math.nan
