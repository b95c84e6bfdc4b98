"""Zeroth-order machinery shared by FedZO (fedzo.py) and FedKSeed/-Pro (fedkseed.py): the
per-tensor perturbation, the forward-only loss and the official weight-decay rule, kept apart so
neither method file imports the other."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ferret.precision import LostUpdates


def decays(name: str) -> bool:
    """Whether weight decay applies to a tensor: the MeZO/FedKSeed official name rule."""
    return not any(s in name for s in ("bias", "layer_norm", "layernorm"))


class Direction:
    """The perturbation z of a seed, over the trainable tensors (named order): each tensor's slice
    is drawn in place, in that tensor's dtype, from one generator on the compute device seeded with
    the seed and advanced tensor by tensor (FedKSeed's own optimizer draws per tensor the same way).
    The same seed gives the same z on every client and on the server, whose host-side weights are
    moved to the compute device one tensor at a time for the update (on one device type: CPU and
    CUDA generators differ).

    ``buffer="tensor"`` (the official code's layout): z is never whole; one tensor's slice at a
    time is drawn for every use of the seed (perturb, restore, update: four draws a step). Extra
    memory: the largest tensor. ``buffer="model"``: the last seed's z is kept whole, drawn once for
    all its uses. Extra memory: one model-sized buffer (1 P); on CPU a ZO step then costs ~2.5x
    less (the draws dominate it). Both give the same z, so the same numbers, bit for bit."""

    def __init__(self, named: Sequence[tuple[str, torch.Tensor]], device: torch.device,
                 sphere: bool = False, buffer: str = "tensor") -> None:
        if not named:
            raise ValueError("zeroth-order methods need at least one trainable parameter")
        self.names = [n for n, _ in named]
        self.numel = sum(t.numel() for _, t in named)
        self.device = torch.device(device)
        self.sphere = sphere
        self._norms: dict[int, float] = {}  # seed -> ||z|| (sphere only; one pass per seed)
        self._largest = max(t.numel() for _, t in named)
        self._scratch: dict[torch.dtype, torch.Tensor] = {}
        self._whole: list[torch.Tensor] | None = None  # buffer="model": the kept z, one view per tensor
        self._whole_seed: int | None = None
        if buffer == "model":
            self._whole = [torch.empty_like(t, device=self.device) for _, t in named]

    def _z(self, t: torch.Tensor) -> torch.Tensor:
        """Room for t's slice of z: a view of one reusable scratch buffer of the largest tensor's
        size (per dtype). Allocating a fresh tensor per draw left freed chunks resident in the C
        allocator's heap: +0.4 P of resident memory measured on the cpu-mid preset."""
        buf = self._scratch.get(t.dtype)
        if buf is None:
            buf = self._scratch[t.dtype] = torch.empty(self._largest, dtype=t.dtype, device=self.device)
        return buf[: t.numel()].view(t.shape)

    def _draws(self, tensors: Sequence[torch.Tensor], seed: int):  # generator of (tensor, z)
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        if self._whole is None:
            for t in tensors:
                z = self._z(t)
                z.normal_(generator=g)
                yield t, z
            return
        if self._whole_seed != seed:
            self._whole_seed = None  # a draw stopped halfway must not pass for this seed's z
            for z in self._whole:
                z.normal_(generator=g)
            self._whole_seed = seed
        yield from zip(tensors, self._whole)

    def _scale(self, tensors: Sequence[torch.Tensor], seed: int) -> float:
        """1, or sqrt(d) / ||z|| on the sphere (z uniform on the sphere of radius sqrt(d))."""
        if not self.sphere:
            return 1.0
        if seed not in self._norms:
            if len(self._norms) > 64:
                self._norms.clear()
            sq = sum(float(torch.linalg.vector_norm(z, dtype=torch.float32)) ** 2
                     for _, z in self._draws(tensors, seed))
            self._norms[seed] = math.sqrt(sq)
        return math.sqrt(self.numel) / max(self._norms[seed], 1e-30)

    @torch.no_grad()
    def add_many(self, tensors: Sequence[torch.Tensor], seeds: Sequence[int], alphas: Sequence[float],
                 lost: LostUpdates | None = None) -> None:
        """tensors += sum_j alphas[j] z(seeds[j]), tensor by tensor with one generator per seed, so
        a tensor not on the compute device moves there and back once for all the seeds (the server's
        rebuild from host memory). Each element receives the same additions in the same order as
        ``add_to`` called seed after seed: the result is bit-identical to that loop. ``lost`` counts
        the entries each of these steps rounds away (ferret/precision.py)."""
        if self.sphere:
            raise ValueError("add_many draws Gaussian directions only")
        gens = []
        for seed in seeds:
            g = torch.Generator(device=self.device)
            g.manual_seed(seed)
            gens.append(g)
        for t in tensors:
            work = t if t.device == self.device else t.to(self.device)
            for g, alpha in zip(gens, alphas):
                z = self._z(t)
                z.normal_(generator=g)
                if lost is not None:
                    lost.observe(work, z, alpha)
                work.add_(z, alpha=alpha)
            if work is not t:
                t.copy_(work)

    @torch.no_grad()
    def add_to(self, tensors: Sequence[torch.Tensor], seed: int, alpha: float, lost: LostUpdates | None = None) -> None:
        """tensors += alpha * z(seed), tensor by tensor (tensors in the named order). A tensor not on
        the compute device (the server's host copy) is moved there for its update and back.
        ``lost`` counts the entries this step rounds away (an update step, not a perturbation)."""
        alpha = alpha * self._scale(tensors, seed)
        for t, z in self._draws(tensors, seed):
            work = t if t.device == self.device else t.to(self.device)
            if lost is not None:
                lost.observe(work, z, alpha)
            work.add_(z, alpha=alpha)
            if work is not t:
                t.copy_(work)


@torch.no_grad()
def batch_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's mean token loss on a batch, as a float32 scalar tensor."""
    return model(**batch).loss.detach().float()


@torch.no_grad()
def weight_decay_(params: list[torch.Tensor], names: list[str], lr: float, wd: float) -> None:
    """w <- w - lr wd w on the tensors the official rule decays."""
    if wd > 0:
        decayed = [p for n, p in zip(names, params) if decays(n)]
        if decayed:
            torch._foreach_mul_(decayed, 1.0 - lr * wd)
