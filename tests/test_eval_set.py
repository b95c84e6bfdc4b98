"""The held-out set is fixed by the data (eval_seed), not by the run's seed or client count."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from ferret import engine, evaluation
from ferret.config import load_config
from ferret.data.registry import load_federated_data
from tests.conftest import tiny_overrides


def _eval_set(**overrides: object) -> list:
    overrides = {"train_per_client": 8, **overrides}
    return load_federated_data(load_config(None, [f"{k}={v}" for k, v in overrides.items()])).eval


def test_eval_set_ignores_seed_and_num_clients() -> None:
    base = _eval_set(seed=0, num_clients=12)
    assert len(base) == 12 * 4  # num_tasks x eval_per_task of the embedded default
    for seed in (1, 7):
        for num_clients in (4, 12, 24):
            assert _eval_set(seed=seed, num_clients=num_clients) == base

    # ...while the training data do follow the seed, and eval_seed picks another set.
    def cfg(seed):
        return load_config(None, [f"seed={seed}"])

    assert load_federated_data(cfg(0)).clients != load_federated_data(cfg(1)).clients
    assert _eval_set(eval_seed=1) != base


def test_eval_set_disjoint_from_training_for_every_seed() -> None:
    for seed in (0, 1):
        data = load_federated_data(load_config(None, [f"seed={seed}"]))
        held_out = {(e.task, e.input) for e in data.eval}
        assert not held_out & {(e.task, e.input) for c in data.clients for e in c}


def test_two_seeds_score_the_same_at_round_0(tmp_path) -> None:
    rows = []
    for seed in (0, 1):
        cfg = load_config(None, tiny_overrides(method="ferret", rounds=1, num_tasks=2, eval_per_task=2, seed=seed,
                                               threads=1, wandb_mode="disabled", checkpoint_every=0))
        engine.run(cfg, tmp_path / f"s{seed}")
        rows.append(pd.read_csv(tmp_path / f"s{seed}" / "metrics.csv").set_index("round").loc[0])
    # Same weights, same eval set: identical to every digit (the CSV's full float repr).
    assert rows[0]["eval_loss"] == rows[1]["eval_loss"]
    assert rows[0]["rouge_l"] == rows[1]["rouge_l"]
    # The runs themselves differ (sampling, batches, bases), so the test can fail.
    finals = [pd.read_csv(tmp_path / f"s{s}" / "metrics.csv")["train_loss"].iloc[-1] for s in (0, 1)]
    assert finals[0] != finals[1]


def test_length_batches_partition_the_indices_shortest_first() -> None:
    from ferret.generation import length_batches

    lengths = [5, 3, 9, 3, 7]
    batches = length_batches(lengths, 2)
    assert batches == [[1, 3], [0, 4], [2]]  # stable: equal lengths keep their order
    assert length_batches([], 4) == []


def test_eval_losses_come_back_in_example_order_whatever_the_batching(tiny) -> None:
    """Batches are formed in length order; each loss must still land on its own example (and
    equal that example scored alone, to padding's rounding)."""
    model, tokenizer = tiny
    seqs = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17, 18, 19, 20, 21], [22, 23, 24, 25], [26, 27, 28]]
    items = [{"input_ids": s, "labels": [-100] * (len(s) - 2) + s[-2:]} for s in seqs]

    def ev(its):
        return evaluation.EvalSet(examples=[None] * len(its), tokenized=its, prompts=[])

    cpu = torch.device("cpu")
    alone = [evaluation.eval_losses(model, ev([it]), load_config(None, []), tokenizer.pad_token_id, cpu)[0]
             for it in items]
    assert len(set(alone)) == len(alone)  # distinct, so a misplaced loss cannot go unnoticed
    for batch_size in (1, 2, 16):
        cfg = load_config(None, [f"eval_batch_size={batch_size}"])
        got = evaluation.eval_losses(model, ev(items), cfg, tokenizer.pad_token_id, torch.device("cpu"))
        assert got == pytest.approx(alone, rel=1e-5, abs=1e-6), batch_size
