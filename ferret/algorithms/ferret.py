"""Ferret: federated full-parameter tuning with shared randomness.

Shu et al., "Ferret: Federated Full-Parameter Tuning at Scale for Large Language Models",
arXiv 2409.06277 (ICML 2025); official code github.com/allen4747/Ferret
(optimizers/ferret_optimizer.py, server.py). Per round r (paper Alg. 1):

    server:  sample clients; share the K seeds s_1..s_K
    client i: w_i <- T first-order local steps from w_r;  delta_i = w_r - w_i   (per block b)
              gamma_{i,k,b} = alpha_b * <delta_{i,b}, v_{k,b}>   for the block's chosen seeds
              send the gamma's (a few numbers per block)
    server:  gamma_k,b = sum_i p_i gamma_{i,k,b};  delta = sum_k clip(gamma_k,b v_k,b)   (once)
             w_{r+1} = w_r - slr_r * delta

The server rebuilds ONE update per round from the averaged coordinates, so its cost does not grow
with the number of clients. A client that keeps a model copy can replay the same rebuild from the
aggregated coordinates it missed (its downlink; see :meth:`Ferret.replay`); the engine counts that
downlink and resets its working copy from the global weights instead (ferret/federated_round.py).

Options (official code = default, but for the basis; paper text or variants behind an option):

| option            | default (official code)              | alternative                                  |
|-------------------|--------------------------------------|----------------------------------------------|
| basis             | rademacher +-1/sqrt(d) (not official) | trunc_normal (official), uniform, gaussian   |
| scaling           | official: alpha = d/n (E = d var D)  | unbiased: alpha = 1/(n var)  (E = D)          |
| seed_allocation   | norm: n_b = max(int(|D_b|/max|D| K),2) random of K | all: every block uses all K     |
| seeds             | fixed: K seeds drawn once per run    | per_round: fresh K seeds every round          |
| block_factor      | 0.9 x median tensor size per block   | any > 0                                       |
| clip_norm         | 10 per (seed, block) contribution    | <= 0 disables                                 |
| slr_schedule      | none (scripts/ferret.sh)             | linear / cosine from slr to slr_min           |
| server_momentum   | 0.0 (scripts/ferret.sh)              | in [0, 1)                                     |

With the official trunc_normal basis, var ~ 1/(3d), so the official scaling's rebuild is
E = delta/3 (before the clip) and the official slr = 10 absorbs it; Rademacher bases have var
1/d, so both scalings coincide for them. The clip uses ||v|| = sqrt(d var), exact for
Rademacher and within O(1/sqrt(d)) for the float bases (saves a second generation pass).
Uplink encoding: per block, the chosen seed indices (int16, or int32 when K > 32767) and the
float32 coordinates, plus a count per block. Downlink: the aggregated coordinates of every round
the client missed since its last participation (and the seeds at first contact).

Why Rademacher by default: its fused kernels draw one hash per 64 entries instead of one per 2
for the official truncated normal, so they run several times faster (``ferret bench projection``
measures both on the machine at hand), and on the default workflow's settings (SmolLM2-135M, K = 16,
4 rounds, seeds 0 and 1) the two reach the same quality within seed noise: final eval loss
2.039 / 1.679 (Rademacher) against 1.996 / 1.605 (trunc_normal, official scaling) and
2.473 / 1.514 (trunc_normal, unbiased scaling). ``workflow/configs/paper.yaml`` sets
``basis: trunc_normal`` to reproduce the official code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ferret import projection
from ferret.algorithms.base import Algorithm, RoundContext
from ferret.algorithms.missed_rounds import mark_synced, missed_rounds
from ferret.comm import Message
from ferret.precision import LostUpdates
from ferret.seeding import generator


def group_blocks(sizes: Sequence[int], factor: float) -> list[list[int]]:
    """The official grouping: consecutive tensors form a block until it would exceed
    ``factor x median(size)``; a tensor larger than that is a block of its own."""
    target = int(factor * float(torch.tensor(sizes, dtype=torch.float64).median()))
    blocks: list[list[int]] = []
    current: list[int] = []
    filled = 0
    for i, size in enumerate(sizes):
        if current and filled + size > target:
            blocks.append(current)
            current, filled = [], 0
        current.append(i)
        filled += size
    if current:
        blocks.append(current)
    return blocks


class Ferret(Algorithm):
    replayable = True  # a round is its seeds and pool: checkpoints hold those, not the weights

    def setup(self, model: torch.nn.Module, tokenizer: object) -> torch.nn.Module:
        model = super().setup(model, tokenizer)
        self.names = list(self.global_params)
        sizes = [self.global_params[n].numel() for n in self.names]
        self.blocks = group_blocks(sizes, self.options.block_factor)
        self.block_sizes = [sum(sizes[i] for i in b) for b in self.blocks]
        self.device = self.compute_device  # projections and rebuilds run here; the global copy may be on the host
        K = self.cfg.K
        self.pool = torch.zeros(K, len(self.blocks), dtype=torch.float32)  # server coordinates
        self._round_sum = torch.zeros_like(self.pool)  # sum_i p_i gamma_i of the current round
        self.history: list[tuple[torch.Tensor, torch.Tensor]] = []  # per round: (seeds, pool)
        self.last_sync: dict[int, int] = {}  # client -> last round whose model it holds
        self.rebuilds = 0  # rebuilds performed by the server (one per round)
        self.last_round = 0  # the round last aggregated (or replayed)
        self._index_dtype = torch.int16 if K <= 32767 else torch.int32
        # Kernel build and every JIT compile outside the timed rounds: encode projects each block
        # with 2..K seeds, a rebuild with the 1..K seeds whose aggregated coordinate is non-zero.
        projection.warm_up(self.options.basis, self.device, self.block_sizes, range(1, K + 1))
        return model

    # -- shared randomness ------------------------------------------------------------------------
    def round_seeds(self, round_: int) -> torch.Tensor:
        """The K seeds of a round (official: the same K for the whole run)."""
        tag = 0 if self.options.seeds == "fixed" else round_
        g = generator(self.cfg.seed, "ferret-seeds", tag)
        return torch.randint(0, 2**62, (self.cfg.K,), generator=g, dtype=torch.int64)

    def _alpha(self, d: int, n: int) -> float:
        var = projection.basis_variance(self.options.basis, d)
        return d / n if self.options.scaling == "official" else 1.0 / (n * var)

    def _slr(self, round_: int, rounds: int) -> float:
        o, frac = self.options, (round_ - 1) / max(rounds, 1)
        if o.slr_schedule == "linear":
            return o.slr_min + (self.cfg.slr - o.slr_min) * (1 - frac)
        if o.slr_schedule == "cosine":
            return o.slr_min + (self.cfg.slr - o.slr_min) * 0.5 * (1 + math.cos(math.pi * frac))
        return self.cfg.slr

    # -- the round ---------------------------------------------------------------------------------
    def downlink(self, client: int, ctx: RoundContext) -> Message:
        """The round's seeds (at first contact, or every round with per-round seeds) and the
        aggregated coordinates of the rounds this client missed, as sparse (flat index, value)."""
        first, missed, tensors = missed_rounds(self.last_sync, client, self.history)
        if first or self.options.seeds == "per_round":
            tensors["seeds"] = self.round_seeds(ctx.round)
        if missed:
            flat = torch.stack([pool for _, pool in missed]).flatten()
            nz = flat.nonzero().squeeze(1)
            tensors["index"], tensors["value"] = nz.to(torch.int32), flat[nz]
            if self.options.seeds == "per_round":
                tensors["missed_seeds"] = torch.stack([seeds for seeds, _ in missed])
        return Message(tensors, {"K": self.cfg.K, "blocks": len(self.blocks)})

    def delivered(self, client: int, ctx: RoundContext) -> None:
        mark_synced(self.last_sync, client, self.history)

    def _block_delta(self, params: dict[str, torch.Tensor], block: list[int]) -> torch.Tensor:
        """delta_b = w_global - w_local over the block's tensors, flat float32 (no concatenation
        copy for a single-tensor block)."""
        parts = [(self.global_params[self.names[i]].to(params[self.names[i]].device) - params[self.names[i]])
                 .flatten().float() for i in block]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _block_norms(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """||delta_b|| per block, tensor by tensor (one tensor-sized temporary at a time): the block
        deltas themselves are built once, in encode's projection loop."""
        return torch.stack([
            torch.stack([torch.dist(self.global_params[self.names[i]].to(params[self.names[i]].device).float(),
                                    params[self.names[i]].float())
                         for i in block]).norm()
            for block in self.blocks])

    @torch.no_grad()
    def encode(self, model: torch.nn.Module, client: int, ctx: RoundContext) -> Message:
        params = dict(self.trainable(model))
        K, o = self.cfg.K, self.options
        seeds = self.round_seeds(ctx.round).to(self.device)
        norms = self._block_norms(params)
        finite = torch.isfinite(norms)
        max_norm = max(float(norms[finite].max()) if finite.any() else 0.0, 1e-8)
        g = generator(self.cfg.seed, "ferret-choice", ctx.round, client)
        counts, indices, values = [], [], []
        for b, block in enumerate(self.blocks):
            if o.seed_allocation == "all":
                n = K
            else:  # official: proportional to the block's share of the largest block norm
                n = 2 if not finite[b] else max(int(float(norms[b]) / max_norm * K), 2)
                n = min(n, K)
            chosen = torch.randperm(K, generator=g)[:n].sort().values
            delta = self._block_delta(params, block)
            keys = projection.stream_keys(seeds[chosen.to(self.device)], b)
            gamma = projection.project(delta, keys, o.basis, o.chunk_elems)
            gamma *= self._alpha(delta.numel(), n)
            counts.append(n)
            indices.append(chosen)
            values.append(gamma.cpu())
        return Message({"counts": torch.tensor(counts, dtype=torch.int32),
                        "index": torch.cat(indices).to(self._index_dtype),
                        "value": torch.cat(values)})

    def _dense(self, msg: Message) -> torch.Tensor:
        """(K, blocks) coordinates from an uplink's sparse encoding."""
        dense = torch.zeros(self.cfg.K, len(self.blocks), dtype=torch.float32)
        cols = torch.repeat_interleave(torch.arange(len(self.blocks)), msg.tensors["counts"].long())
        dense[msg.tensors["index"].long(), cols] = msg.tensors["value"]
        return dense

    def receive(self, msg: Message, weight: float, ctx: RoundContext) -> None:
        self._round_sum += weight * self._dense(msg)

    @torch.no_grad()
    def aggregate(self, ctx: RoundContext) -> None:
        self.pool = self.options.server_momentum * self.pool + self._round_sum
        self._round_sum = torch.zeros_like(self.pool)
        seeds = self.round_seeds(ctx.round)
        self.history.append((seeds, self.pool.clone()))
        self.rebuilds += 1
        self.last_round = ctx.round
        self.apply_round(self.global_params, seeds, self.pool, self._slr(ctx.round, ctx.rounds), self.lost_server)

    @torch.no_grad()
    def apply_round(self, params: dict[str, torch.Tensor], seeds: torch.Tensor, pool: torch.Tensor,
                    slr: float, lost: LostUpdates | None = None) -> None:
        """w <- w - slr * sum_k clip(pool[k, b] v_{k,b}) for every block: the one rebuild of a round.
        The server calls it once per round (counting in ``lost`` what the weights' dtype rounds
        away of the float32 rebuild); a client replays it for every round it missed."""
        o = self.options
        seeds = seeds.to(self.device)
        for b, block in enumerate(self.blocks):
            nz = pool[:, b].nonzero().squeeze(1)
            if nz.numel() == 0:
                continue
            d = self.block_sizes[b]
            coef = pool[nz, b].to(self.device)
            if o.clip_norm > 0:
                v_norm = math.sqrt(d * projection.basis_variance(o.basis, d))
                coef = coef * torch.clamp(o.clip_norm / (coef.abs() * v_norm + 1e-8), max=1.0)
            update = projection.reconstruct(coef, projection.stream_keys(seeds[nz.to(self.device)], b),
                                            o.basis, torch.zeros(d, dtype=torch.float32, device=self.device),
                                            o.chunk_elems)
            start = 0
            for i in block:
                p = params[self.names[i]]
                part = update[start : start + p.numel()].view_as(p).to(p.device)
                if lost is not None:
                    lost.observe(p, part, -slr)
                p.sub_(part.to(p.dtype), alpha=slr)
                start += p.numel()

    def replay(self, params: dict[str, torch.Tensor], msg: Message, rounds: int) -> None:
        """Bring a client's stale copy up to date from its downlink (the missed rounds' pools)."""
        if "index" not in msg.tensors:
            return
        missed = msg.tensors["rounds"].tolist()
        flat = torch.zeros(len(missed) * self.cfg.K * len(self.blocks), dtype=torch.float32)
        flat[msg.tensors["index"].long()] = msg.tensors["value"]
        pools = flat.view(len(missed), self.cfg.K, len(self.blocks))
        for j, r in enumerate(missed):
            seeds = msg.tensors["missed_seeds"][j] if "missed_seeds" in msg.tensors else self.round_seeds(r)
            self.apply_round(params, seeds, pools[j], self._slr(r, rounds))

    # -- checkpointing (replay: ferret/checkpoint.py) ----------------------------------------------
    def round_record(self) -> dict[str, object]:
        """The last round's seeds and aggregated pool (K x blocks float32): all its update needs."""
        seeds, pool = self.history[-1]
        return {"round": self.last_round, "seeds": seeds, "pool": pool}

    @torch.no_grad()
    def replay_round(self, record: dict[str, object]) -> None:
        """Redo :meth:`aggregate`'s server update from the round's record (same rebuild, same inputs)."""
        seeds, pool, round_ = record["seeds"], record["pool"], int(record["round"])
        self.pool = pool.clone()
        self.history.append((seeds, pool.clone()))
        self.rebuilds += 1
        self.last_round = round_
        self.apply_round(self.global_params, seeds, self.pool, self._slr(round_, self.cfg.rounds))

    def state_dict(self) -> dict[str, object]:
        """Each client's last synchronised round; replay rebuilds the weights, pool and history."""
        return {**super().state_dict(), "last_sync": {str(c): r for c, r in self.last_sync.items()}}

    def load_state_dict(self, state: dict[str, object]) -> None:
        super().load_state_dict(state)
        self.last_sync = {int(c): int(r) for c, r in state["last_sync"].items()}
