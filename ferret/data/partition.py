"""Split a data set's instances among clients: by task, by a Dirichlet over labels, or IID.

Partitioners see only labels or counts and return lists of instance indices, one per client;
loaders turn them into examples. Every index appears in exactly one client.

- :func:`task_partition`: one client per distinct label, in order of first appearance (Natural
  Instructions: one training task = one client).
- :func:`dirichlet_partition`: the label-Dirichlet split of the official code
  (``utils_data/partition_data.py``, from FedKSeed/FedNova-style code), re-implemented: for every
  label, shuffle its instances and cut them among the clients by proportions drawn from
  Dir(alpha); a client already holding at least N / num_clients instances gets no more
  ("balance"); redraw everything until every client holds at least ``min_size`` (official: 10).
  Deviation: the official loop retries forever; here it stops with a DataError after
  ``max_tries`` draws, and fails at once when ``N < num_clients * min_size``.
- :func:`iid_partition`: a seeded permutation cut into ``num_clients`` equal parts, the last one
  taking the remainder (official: ``random_split`` with the same sizes).

Randomness comes from :func:`rng`, a NumPy generator seeded from a SHA-256 digest of the root
seed and a tag path, so partitions are identical across processes and machines.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from ferret.data.types import DataError
from ferret.seeding import seed64


def rng(*parts: object) -> np.random.Generator:
    """A NumPy generator seeded from the root seed and a tag path (never Python's salted hash)."""
    return np.random.default_rng(seed64(*parts))


def task_partition(labels: Sequence[Hashable]) -> tuple[list[Hashable], list[list[int]]]:
    """(distinct labels in order of first appearance, the indices of each)."""
    groups: dict[Hashable, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    return list(groups), list(groups.values())


def _check_clients(n: int, num_clients: int, min_size: int) -> None:
    if num_clients < 1:
        raise DataError(f"num_clients={num_clients}: must be >= 1")
    if n < num_clients * max(min_size, 1):
        raise DataError(f"{n} instances cannot give each of num_clients={num_clients} clients "
                        f"at least {max(min_size, 1)}")


def iid_partition(n: int, num_clients: int, generator: np.random.Generator) -> list[list[int]]:
    """A seeded permutation of range(n) cut into num_clients parts of n // num_clients (last: the rest)."""
    _check_clients(n, num_clients, 1)
    order = generator.permutation(n).tolist()
    size = n // num_clients
    cuts = [size * c for c in range(num_clients)] + [n]
    return [order[cuts[c]:cuts[c + 1]] for c in range(num_clients)]


def dirichlet_partition(labels: Sequence[Hashable], num_clients: int, alpha: float,
                        generator: np.random.Generator, min_size: int = 10,
                        max_tries: int = 1000) -> list[list[int]]:
    """Label-Dirichlet split (see the module docstring); every client gets >= min_size indices."""
    if not alpha > 0:
        raise DataError(f"dirichlet_alpha={alpha}: must be > 0 (0 selects the IID split)")
    n = len(labels)
    _check_clients(n, num_clients, min_size)
    _, by_label = task_partition(labels)
    cap = n / num_clients
    for _ in range(max_tries):
        clients: list[list[int]] = [[] for _ in range(num_clients)]
        for indices in by_label:
            idx = np.array(indices)
            generator.shuffle(idx)
            p = generator.dirichlet(np.full(num_clients, alpha))
            # Balance: clients that already hold their share of N take no more of this label.
            p = p * np.array([len(c) < cap for c in clients])
            p = p / p.sum() if p.sum() > 0 else np.full(num_clients, 1.0 / num_clients)
            cuts = (np.cumsum(p) * len(idx)).astype(int)[:-1]
            for client, part in zip(clients, np.split(idx, cuts)):
                client.extend(part.tolist())
        if min(len(c) for c in clients) >= min_size:
            for client in clients:
                generator.shuffle(client)
            return clients
    raise DataError(f"no Dirichlet(alpha={alpha}) split of {n} instances gave each of {num_clients} clients "
                    f"at least {min_size} in {max_tries} draws; raise alpha or lower num_clients")
