"""FedKSeed and FedKSeed-Pro: zeroth-order steps on K shared seeds; (seed index, scalar) messages.

Qin et al., "Federated Full-Parameter Tuning of Billion-Sized Language Models with Communication
Cost under 18 Kilobytes", ICML 2024 (arXiv 2312.06353); official code github.com/zhenqincn/FedKSeed
(main.py, client.py, server.py, optimizers/mezo_optimizer.py, optimizers/mezo_bias_optimizer.py),
re-implemented here. Per round r:

    once:     K candidate seeds s_1..s_K (from the run's root seed)
    server:   send each sampled client the pooled pairs (k, G_{r',k}) of every round r' it missed
              (and the K seeds at first contact; FedKSeed-Pro: the seed probabilities p)
    client i: w <- w_r (replaying the missed pairs: w -= lr sum_k G_{r',k} z_k, round by round)
              for each local micro-batch B (one ZO step each):
                  k ~ Uniform{1..K}  (Pro: k ~ p);   z_k ~ N(0, I) regenerated from seed s_k
                  g = (L(w + eps z_k; B) - L(w - eps z_k; B)) / (2 eps)
                  w <- w - lr g z_k;   record (k, g)
              send the recorded (k, g) pairs: tensors `index` and `grad`, one entry per step
    server:   G_{r,k} = sum_i p_i sum_{steps of i with seed k} g      (a dense K-vector, per round)
              w_{r+1} = w_r - lr sum_{k: G_{r,k} != 0} G_{r,k} z_k;  append the sparse (k, G_{r,k})
    Pro:      a_k = mean(|clip(h_k, +-bias_loss_clip)|) over the history h_k = [grad_initial, every
              g any client sent for seed k];  p = softmax(min_max_norm(a))  (server.py)

The server's rebuild and a client's replay are one function (:meth:`FedKSeed.apply_pairs`), so a
client that missed rounds lands on the server's weights bit for bit (tests/test_zo_baselines.py).
The engine resets its working copy from the global weights instead of replaying (identical with the
per_round downlink, equal up to float rounding with merged, and cheaper); the bytes logged are
those of the real downlink message built here (ferret/federated_round.py).

Options (official code = default):

| option          | default    | source / alternative                                                |
|-----------------|------------|---------------------------------------------------------------------|
| eps             | 5e-4       | main.py --zo_eps                                                    |
| lr              | 0          | this method's step size, 0 = the run's lr (README scripts: 3e-7;    |
|                 |            | the shared first-order lr 1e-3 diverges)                            |
| downlink        | per_round  | per_round: the missed rounds' pairs one round after another (replay |
|                 |            | equals the server bit for bit); merged: one pair per seed summed    |
|                 |            | over the missed rounds, at most K pairs (the paper's bound; replay  |
|                 |            | equals the server up to float rounding)                             |
| bias_loss_clip  | 1000.0     | Pro only; main.py --bias_loss_clip                                  |
| grad_initial    | 0.0        | Pro only; main.py --grad_initial (first entry of every history)     |
| z_buffer        | tensor     | tensor: z drawn tensor by tensor for each use, as the official code |
|                 |            | (one tensor's z in memory); model: each seed's z kept whole, drawn  |
|                 |            | once (+1 model-sized buffer, ~2.5x faster local steps on CPU); the  |
|                 |            | same numbers either way (baselines/_zeroth_order.py Direction)      |

Shared config keys: ``K`` (official default 4096, README scripts 1024), ``lr`` (official default
1e-3, README scripts 3e-7), ``weight_decay`` (official 0), ``grad_clip`` (official --grad_clip,
default -100 = off: a step whose |L+ - L-| exceeds it is skipped, neither applied nor sent),
``equal_weight`` (official default: data-size weights; the engine computes p_i).

Deviations from the official code:
- The server updates the global model incrementally, w_{r+1} = w_r - lr sum_k G_{r,k} z_k; the
  official server rebuilds from w_0 every round with the cumulative pool sum_r G_{r,k}. Equal in
  exact arithmetic (the update is linear; weight decay aside), and the rebuild costs nnz(G_r)
  regenerations per round instead of up to K.
- Weight decay: clients apply it in each step as the official optimizer does (tensors whose name
  has no "bias"/"layer_norm"/"layernorm"); the server applies none (the official rebuild applies
  it once per nonzero seed, an artefact of reusing the client's update function).
- Random numbers: seeds are ``derive_seed``-derived 62-bit integers (official:
  np.random.randint(1, 1e11, K)); z_k is drawn tensor by tensor (named order), in place, in the
  tensor's dtype, from one ``torch.Generator`` on the compute device seeded with s_k (official:
  global torch.manual_seed(s_k), then torch.normal per tensor). Same distribution, not
  the same numbers; identical on every client and the server of a run (one device type). The
  per-step seed choice comes from ``generator(seed, "fedkseed-sample", round, client)``
  (official: the global NumPy RNG).
- z_k is regenerated for each use, four times per step as in the official optimizer, one tensor at
  a time (official: also new parameter tensors at every perturbation); the arithmetic is the same.
  ``z_buffer=model`` keeps the step's z_k whole instead (one draw, +1 model-sized buffer, the same
  numbers).
  The server's global weights stay on the host under ``offload=host`` (official: ``model_w0`` on
  the CPU) and move to the compute device one tensor at a time for the rebuild, so that server and
  clients draw z_k from the same device's generator.
- The training loss returned is the mean of (L+ + L-)/2 over the applied steps (official logs
  L+). Steps with a non-finite loss are skipped, as in the official code; NaN if none is finite.
- ``n_accum`` and ``momentum`` are ignored (one plain ZO step per micro-batch, the official
  batch_or_epoch='batch' mode). The official code loads the model in float16: here ``cfg.dtype``
  and ``cfg.precision`` (``dtype: float16, precision: pure`` is the official setting, with z drawn
  in float16 as there; ferret/precision.py).
- FedKSeed-Pro: the probabilities travel as float32 (official: a float64 NumPy array shared
  in-process). The server rebuilds each seed's |g| history from the uplinks (which carry every
  step's g), so clients do not write into a shared history as in the official code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from baselines._zeroth_order import Direction, batch_loss, weight_decay_
from ferret.algorithms.base import Algorithm, RoundContext
from ferret.algorithms.missed_rounds import mark_synced, missed_rounds
from ferret.comm import Message
from ferret.precision import LostUpdates
from ferret.seeding import generator


class FedKSeed(Algorithm):
    replayable = True  # a round is its (seed index, G) pairs: checkpoints hold those, not the weights

    def setup(self, model: torch.nn.Module, tokenizer: object) -> torch.nn.Module:
        model = super().setup(model, tokenizer)
        K = self.cfg.K
        self.names = list(self.global_params)
        self.direction = Direction(list(self.global_params.items()), self.compute_device,
                                   buffer=self.options.z_buffer)
        # The K candidate seeds, drawn once for the whole run (official main.py).
        self.seeds = torch.randint(0, 2**62, (K,), generator=generator(self.cfg.seed, "fedkseed-seeds"),
                                   dtype=torch.int64)
        self.index_dtype = torch.int16 if K <= 32767 else torch.int32
        self.probs = torch.full((K,), 1.0 / K, dtype=torch.float32)  # uniform (Pro: updated per round)
        self.history: list[tuple[torch.Tensor, torch.Tensor]] = []  # per round: (seed indices, G)
        self.last_sync: dict[int, int] = {}  # client -> number of rounds its model copy holds
        self._pool = torch.zeros(K, dtype=torch.float64)  # sum_i p_i g of the current round, per seed
        self._steps: list[tuple[int, float]] = []  # (k, g) of the client being trained
        self.last_round = 0  # the round last aggregated (or replayed)
        return model

    # -- the shared update: server rebuild and client replay ----------------------------------------
    @torch.no_grad()
    def apply_pairs(self, params: dict[str, torch.Tensor], index: torch.Tensor, grad: torch.Tensor,
                    seeds: torch.Tensor | None = None, lost: LostUpdates | None = None) -> None:
        """w <- w - lr sum_j grad_j z_{index_j}, regenerating each z tensor by tensor; a host-side
        tensor visits the compute device once for all the pairs (:meth:`Direction.add_many`);
        ``lost`` counts what each of these steps rounds away."""
        seeds = self.seeds if seeds is None else seeds
        tensors = [params[n] for n in self.names]
        lr = self.local_lr()
        self.direction.add_many(tensors, [int(seeds[k]) for k in index.tolist()], [-lr * g for g in grad.tolist()],
                                lost)

    def replay(self, params: dict[str, torch.Tensor], msg: Message) -> None:
        """Bring a stale copy of the global weights up to date from a (decoded) downlink."""
        if "index" not in msg.tensors:
            return
        counts = msg.tensors["counts"].tolist()
        seeds = msg.tensors.get("seeds")
        for index, grad in zip(msg.tensors["index"].long().split(counts), msg.tensors["grad"].split(counts)):
            self.apply_pairs(params, index, grad, seeds)

    # -- the round ----------------------------------------------------------------------------------
    def downlink(self, client: int, ctx: RoundContext) -> Message:
        first, missed, tensors = missed_rounds(self.last_sync, client, self.history)
        if first:
            tensors["seeds"] = self.seeds
        if missed:
            if self.options.downlink == "merged":
                dense = torch.zeros(self.cfg.K, dtype=torch.float64)
                for index, grad in missed:
                    dense.index_add_(0, index, grad.double())
                index = dense.nonzero().squeeze(1)
                grad = dense[index].float()
                counts = [index.numel()]
            else:
                index = torch.cat([i for i, _ in missed])
                grad = torch.cat([g for _, g in missed])
                counts = [i.numel() for i, _ in missed]
            tensors["counts"] = torch.tensor(counts, dtype=torch.int32)
            tensors["index"] = index.to(self.index_dtype)
            tensors["grad"] = grad
        self._add_downlink(tensors)
        return Message(tensors)

    def delivered(self, client: int, ctx: RoundContext) -> None:
        mark_synced(self.last_sync, client, self.history)

    def _add_downlink(self, tensors: dict[str, torch.Tensor]) -> None:
        """Hook for FedKSeed-Pro's probabilities."""

    def _sample(self, g: torch.Generator) -> int:
        return int(torch.randint(self.cfg.K, (1,), generator=g))

    @torch.no_grad()
    def local_train(self, model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    client: int, ctx: RoundContext) -> float:
        cfg, eps, z = self.cfg, self.options.eps, self.direction
        named = self.trainable(model)
        names, params = [n for n, _ in named], [p for _, p in named]
        if names != self.names:
            raise ValueError("the model's trainable parameters differ from those seen in setup")
        g_choice = generator(cfg.seed, "fedkseed-sample", ctx.round, client)
        self._steps = []
        losses: list[float] = []
        model.eval()  # deterministic forwards: no dropout between the two evaluations
        for batch in batches:
            k = self._sample(g_choice)
            seed = int(self.seeds[k])  # z_k is redrawn from it for perturb, restore and update
            z.add_to(params, seed, eps)
            plus = batch_loss(model, batch)
            z.add_to(params, seed, -2 * eps)
            minus = batch_loss(model, batch)
            z.add_to(params, seed, eps)
            diff = plus - minus
            if not torch.isfinite(diff):
                continue  # official: a NaN loss skips the step
            if cfg.grad_clip > 0 and abs(diff.item()) > cfg.grad_clip:
                continue  # official --grad_clip: skip steps with an over-large loss difference
            g = (diff / (2 * eps)).item()  # float32 arithmetic: exactly what the float32 uplink holds
            z.add_to(params, seed, -self.local_lr() * g, self.lost_local)
            weight_decay_(params, names, self.local_lr(), cfg.weight_decay)
            self._steps.append((k, g))
            losses.append(((plus + minus) / 2).item())
        return sum(losses) / len(losses) if losses else math.nan

    def encode(self, model: torch.nn.Module, client: int, ctx: RoundContext) -> Message:
        return Message({"index": torch.tensor([k for k, _ in self._steps], dtype=self.index_dtype),
                        "grad": torch.tensor([g for _, g in self._steps], dtype=torch.float32)})

    def receive(self, msg: Message, weight: float, ctx: RoundContext) -> None:
        index, grad = msg.tensors["index"].long(), msg.tensors["grad"]
        self._pool.index_add_(0, index, grad.double() * weight)
        self._observe(index, grad)

    def _observe(self, index: torch.Tensor, grad: torch.Tensor) -> None:
        """Hook for FedKSeed-Pro's gradient history."""

    @torch.no_grad()
    def aggregate(self, ctx: RoundContext) -> None:
        pool = self._pool.float()
        self._pool = torch.zeros_like(self._pool)
        index = pool.nonzero().squeeze(1)
        self.history.append((index, pool[index]))
        self.last_round = ctx.round
        self.apply_pairs(self.global_params, index, pool[index], lost=self.lost_server)
        self._end_round()

    def _end_round(self) -> None:
        """Hook for FedKSeed-Pro's probabilities."""

    # -- checkpointing (replay: ferret/checkpoint.py) ----------------------------------------------
    def round_record(self) -> dict[str, object]:
        """The last round's pooled (seed index, G) pairs: all its update needs."""
        index, grad = self.history[-1]
        return {"round": self.last_round, "index": index, "grad": grad}

    @torch.no_grad()
    def replay_round(self, record: dict[str, object]) -> None:
        """Redo :meth:`aggregate`'s server update from the round's pairs (same update, same inputs).
        The seed probabilities are not recomputed: they are in :meth:`state_dict`."""
        index, grad = record["index"], record["grad"]
        self.history.append((index, grad))
        self.last_round = int(record["round"])
        self.apply_pairs(self.global_params, index, grad)

    def state_dict(self) -> dict[str, object]:
        """Each client's last synchronised round and the seed probabilities; replay rebuilds the
        weights and the history."""
        return {**super().state_dict(), "last_sync": {str(c): r for c, r in self.last_sync.items()},
                "probs": self.probs}

    def load_state_dict(self, state: dict[str, object]) -> None:
        super().load_state_dict(state)
        self.last_sync = {int(c): int(r) for c, r in state["last_sync"].items()}
        self.probs = state["probs"].clone()


class FedKSeedPro(FedKSeed):

    def setup(self, model: torch.nn.Module, tokenizer: object) -> torch.nn.Module:
        model = super().setup(model, tokenizer)
        o, K = self.options, self.cfg.K
        # Every seed's history starts as [grad_initial] (server.py); keep its clipped |g| sum and length.
        first = abs(max(-o.bias_loss_clip, min(o.bias_loss_clip, o.grad_initial)))
        self._abs_sum = torch.full((K,), first, dtype=torch.float64)
        self._count = torch.ones(K, dtype=torch.float64)
        return model

    def state_dict(self) -> dict[str, object]:
        return {**super().state_dict(), "abs_sum": self._abs_sum, "count": self._count}

    def load_state_dict(self, state: dict[str, object]) -> None:
        super().load_state_dict(state)
        self._abs_sum, self._count = state["abs_sum"].clone(), state["count"].clone()

    def _observe(self, index: torch.Tensor, grad: torch.Tensor) -> None:
        # Every step's g, unweighted, as the official clients append to the shared history.
        c = self.options.bias_loss_clip
        self._abs_sum.index_add_(0, index, grad.double().clamp(-c, c).abs())
        self._count.index_add_(0, index, torch.ones(index.numel(), dtype=torch.float64))

    def mean_abs_grad(self) -> torch.Tensor:
        """a_k = mean of |clip(g)| over seed k's history (float64)."""
        return self._abs_sum / self._count

    def probabilities(self) -> torch.Tensor:
        """p = softmax(min_max_norm(a)) (server.py calculate_probabilities), float64."""
        a = self.mean_abs_grad()
        lo, hi = a.min(), a.max()
        return torch.softmax((a - lo) / (hi + 1e-10 - lo), dim=0)

    def _end_round(self) -> None:
        # For the next round's sampling: computed before it starts, as the official main loop does.
        self.probs = self.probabilities().float()

    def _add_downlink(self, tensors: dict[str, torch.Tensor]) -> None:
        tensors["probs"] = self.probs

    def _sample(self, g: torch.Generator) -> int:
        return int(torch.multinomial(self.probs, 1, generator=g))
