"""The held-out set is fixed by the data (eval_seed), not by the run's seed or client count."""

from __future__ import annotations

import pandas as pd

from ferret import engine
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
    cfg = lambda seed: load_config(None, [f"seed={seed}"])  # noqa: E731
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
