"""Data set names -> loaders. Each loader takes the run config and returns FederatedData.

The real data sets (natural-instructions, dolly, codealpaca, gsm8k) read ``cfg.data_path``, a
local path or a Hugging Face dataset id; ``cfg.eval_limit`` > 0 keeps a fixed sample of that
many evaluation instances (in their original order; the same for every seed, so runs compare).
Their config checks never touch the path, so a grid can be validated (``snakemake -n``) on a
machine without the data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferret.data.types import DataError, FederatedData, Metric
from ferret.hints import did_you_mean


def _synthetic(cfg: Any) -> FederatedData:
    from ferret.data.synthetic import FAMILY_ORDER, build_synthetic

    return build_synthetic(cfg.num_clients, cfg.train_per_client, cfg.eval_per_task, cfg.seed,
                           families=list(FAMILY_ORDER[: cfg.num_tasks]), eval_seed=cfg.eval_seed)


def _natural_instructions(cfg: Any) -> FederatedData:
    from ferret.data.natural_instructions import load_natural_instructions
    from ferret.data.records import expand

    return load_natural_instructions(expand(cfg.data_path), cfg.num_clients, cfg.seed, max_length=cfg.max_length)


def _dolly(cfg: Any) -> FederatedData:
    from ferret.data.dolly import load_dolly

    return load_dolly(cfg.data_path, cfg.num_clients, cfg.seed, alpha=cfg.dirichlet_alpha,
                      eval_category=cfg.eval_category)


def _codealpaca(cfg: Any) -> FederatedData:
    from ferret.data.codealpaca import load_codealpaca

    return load_codealpaca(cfg.data_path, cfg.num_clients, cfg.seed, split=cfg.codealpaca_split)


def _gsm8k(cfg: Any) -> FederatedData:
    from ferret.data.gsm8k import load_gsm8k

    return load_gsm8k(cfg.data_path, cfg.num_clients, cfg.seed)


DATASETS: dict[str, Callable[[Any], FederatedData]] = {
    "synthetic": _synthetic,
    "natural-instructions": _natural_instructions,
    "dolly": _dolly,
    "codealpaca": _codealpaca,
    "gsm8k": _gsm8k,
}
REAL = ("natural-instructions", "dolly", "codealpaca", "gsm8k")


def _check_synthetic(cfg: Any) -> None:
    from ferret.data.synthetic import FAMILY_ORDER

    if not 1 <= cfg.num_tasks <= len(FAMILY_ORDER):
        raise DataError(f"num_tasks={cfg.num_tasks}: the synthetic set has 1 to {len(FAMILY_ORDER)} task families")
    _synthetic(cfg)  # milliseconds: catches a family too small for the requested sizes up front


def _check_real(cfg: Any) -> None:
    if not str(cfg.data_path).strip():
        raise DataError(f"dataset={cfg.dataset} needs data_path (a local path or a Hugging Face dataset id)")
    if getattr(cfg, "eval_limit", 0) < 0:
        raise DataError(f"eval_limit={cfg.eval_limit}: must be >= 0 (0 = all)")
    if cfg.dataset == "codealpaca":
        from ferret.data.codealpaca import CLIENT_LANGUAGES, SPLITS

        split = getattr(cfg, "codealpaca_split", "iid")
        if split not in SPLITS:
            raise DataError(f"codealpaca_split={split!r}: must be one of {', '.join(SPLITS)}")
        if split == "language" and cfg.num_clients != len(CLIENT_LANGUAGES):
            raise DataError(f"codealpaca_split=language makes {len(CLIENT_LANGUAGES)} clients (one per language), "
                            f"got num_clients={cfg.num_clients}")
    if cfg.dataset == "dolly" and not cfg.dirichlet_alpha >= 0:
        raise DataError(f"dirichlet_alpha={cfg.dirichlet_alpha}: must be >= 0 (0 = IID)")


# Cheap checks of a config's data settings, run before anything is loaded.
CHECKS: dict[str, Callable[[Any], None]] = {
    "synthetic": _check_synthetic,
    **{name: _check_real for name in REAL},
}


def check_data_config(cfg: Any) -> None:
    """Validate the data set name and its settings without building anything."""
    check_dataset_name(cfg.dataset)
    CHECKS.get(cfg.dataset, lambda _: None)(cfg)


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'{did_you_mean(name, DATASETS)}; known: {', '.join(DATASETS)}")


def limit_eval(data: FederatedData, limit: int) -> FederatedData:
    """Keep a fixed sample of ``limit`` evaluation instances (all when limit is 0 or not smaller)."""
    if limit <= 0 or len(data.eval) <= limit:
        return data
    from ferret.data.partition import rng

    keep = sorted(rng(0, data.name, "eval-limit").choice(len(data.eval), size=limit, replace=False).tolist())
    data.eval = [data.eval[i] for i in keep]
    return data


def dataset_metrics(name: str) -> dict[str, Metric]:
    """The extra generation metrics a data set's runs log (FederatedData.metrics), without
    loading it: what `ferret rescore` recomputes beside Rouge-L."""
    check_dataset_name(name)
    if name == "gsm8k":
        from ferret.data.gsm8k import METRICS

        return dict(METRICS)
    return {}


def load_federated_data(cfg: Any) -> FederatedData:
    check_dataset_name(cfg.dataset)
    data = DATASETS[cfg.dataset](cfg)
    if data.num_clients != cfg.num_clients:  # the engine samples clients from range(num_clients)
        raise DataError(f"{cfg.dataset}: loader built {data.num_clients} clients for num_clients={cfg.num_clients}")
    return limit_eval(data, getattr(cfg, "eval_limit", 0)) if cfg.dataset in REAL else data
