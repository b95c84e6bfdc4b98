"""Data set names -> loaders. Each loader takes the run config and returns FederatedData."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from ferret.data.types import DataError, FederatedData


def _synthetic(cfg: Any) -> FederatedData:
    from ferret.data.synthetic import build_synthetic

    return build_synthetic(cfg.num_clients, cfg.train_per_client, cfg.eval_per_task, cfg.seed)


DATASETS: dict[str, Callable[[Any], FederatedData]] = {
    "synthetic": _synthetic,
}


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(f"unknown dataset '{name}'{hint}; known: {', '.join(DATASETS)}")


def load_federated_data(cfg: Any) -> FederatedData:
    check_dataset_name(cfg.dataset)
    return DATASETS[cfg.dataset](cfg)
