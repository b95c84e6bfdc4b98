"""Data set names -> loaders. Each loader takes the run config and returns FederatedData."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from ferret.data.types import DataError, FederatedData


def _synthetic(cfg: Any) -> FederatedData:
    from ferret.data.synthetic import FAMILY_ORDER, build_synthetic

    return build_synthetic(cfg.num_clients, cfg.train_per_client, cfg.eval_per_task, cfg.seed,
                           families=list(FAMILY_ORDER[: cfg.num_tasks]))


DATASETS: dict[str, Callable[[Any], FederatedData]] = {
    "synthetic": _synthetic,
}


def _check_synthetic(cfg: Any) -> None:
    from ferret.data.synthetic import FAMILY_ORDER

    if not 1 <= cfg.num_tasks <= len(FAMILY_ORDER):
        raise DataError(f"num_tasks={cfg.num_tasks}: the synthetic set has 1 to {len(FAMILY_ORDER)} task families")
    _synthetic(cfg)  # milliseconds: catches a family too small for the requested sizes up front


# Cheap checks of a config's data settings, run before anything is loaded.
CHECKS: dict[str, Callable[[Any], None]] = {
    "synthetic": _check_synthetic,
}


def check_data_config(cfg: Any) -> None:
    """Validate the data set name and its settings without building anything."""
    check_dataset_name(cfg.dataset)
    CHECKS.get(cfg.dataset, lambda _: None)(cfg)


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(f"unknown dataset '{name}'{hint}; known: {', '.join(DATASETS)}")


def load_federated_data(cfg: Any) -> FederatedData:
    check_dataset_name(cfg.dataset)
    return DATASETS[cfg.dataset](cfg)
