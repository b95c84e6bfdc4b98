"""Partitioners on their own: client counts, label proportions, no instance lost or duplicated."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ferret.data.partition import dirichlet_partition, iid_partition, rng, task_partition
from ferret.data.types import DataError

# 8 labels of unequal size (like Dolly's categories), 2,000 instances
SIZES = [500, 400, 300, 250, 200, 150, 120, 80]
LABELS = [f"c{k}" for k, n in enumerate(SIZES) for _ in range(n)]


def _assert_exact_cover(parts: list[list[int]], n: int) -> None:
    flat = [i for p in parts for i in p]
    assert len(flat) == n, "an instance was lost or duplicated"
    assert sorted(flat) == list(range(n))


def test_task_partition_groups_by_label_in_first_appearance_order():
    names, parts = task_partition(["b", "a", "b", "c", "a"])
    assert names == ["b", "a", "c"]
    assert parts == [[0, 2], [1, 4], [3]]


@pytest.mark.parametrize("n,k", [(100, 7), (10, 10), (2001, 200)])
def test_iid_sizes_and_exact_cover(n, k):
    parts = iid_partition(n, k, rng(0, "t"))
    assert len(parts) == k
    assert [len(p) for p in parts[:-1]] == [n // k] * (k - 1)
    assert len(parts[-1]) == n - (k - 1) * (n // k)
    _assert_exact_cover(parts, n)


def test_iid_is_seeded():
    assert iid_partition(50, 5, rng(1, "t")) == iid_partition(50, 5, rng(1, "t"))
    assert iid_partition(50, 5, rng(1, "t")) != iid_partition(50, 5, rng(2, "t"))


@pytest.mark.parametrize("alpha,k", [(0.1, 20), (0.5, 50), (5.0, 50)])
def test_dirichlet_counts_min_size_and_exact_cover(alpha, k):
    parts = dirichlet_partition(LABELS, k, alpha, rng(0, "d"))
    assert len(parts) == k
    assert min(len(p) for p in parts) >= 10
    _assert_exact_cover(parts, len(LABELS))


def _mean_label_distance(parts: list[list[int]]) -> float:
    """Mean total-variation distance between each client's label mix and the global one."""
    glob = Counter(LABELS)
    total = len(LABELS)
    dists = []
    for p in parts:
        local = Counter(LABELS[i] for i in p)
        dists.append(0.5 * sum(abs(local[c] / len(p) - glob[c] / total) for c in glob))
    return float(np.mean(dists))


def test_dirichlet_alpha_controls_label_skew():
    skewed = _mean_label_distance(dirichlet_partition(LABELS, 20, 0.1, rng(0, "d")))
    mild = _mean_label_distance(dirichlet_partition(LABELS, 20, 0.5, rng(0, "d")))
    near_iid = _mean_label_distance(dirichlet_partition(LABELS, 20, 1000.0, rng(0, "d")))
    iid = _mean_label_distance(iid_partition(len(LABELS), 20, rng(0, "d")))
    assert skewed > mild > near_iid
    assert skewed > 0.4  # most clients dominated by one or two labels
    assert near_iid < 0.15 and iid < 0.15  # every client close to the global mix


def test_dirichlet_balance_caps_client_growth():
    # Without the balance rule a tiny alpha would give one client almost everything.
    parts = dirichlet_partition(LABELS, 20, 0.05, rng(3, "d"))
    cap = len(LABELS) / 20
    biggest_label = max(SIZES)
    assert max(len(p) for p in parts) < cap + biggest_label


def test_dirichlet_is_seeded():
    a = dirichlet_partition(LABELS, 10, 0.5, rng(0, "d"))
    assert a == dirichlet_partition(LABELS, 10, 0.5, rng(0, "d"))
    assert a != dirichlet_partition(LABELS, 10, 0.5, rng(1, "d"))


def test_dirichlet_errors_are_one_line():
    with pytest.raises(DataError, match="200 clients|num_clients=200") as e:
        dirichlet_partition(LABELS[:1000], 200, 0.5, rng(0, "d"))
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="dirichlet_alpha=0"):
        dirichlet_partition(LABELS, 10, 0.0, rng(0, "d"))
    with pytest.raises(DataError, match="num_clients=6"):
        iid_partition(5, 6, rng(0, "d"))
