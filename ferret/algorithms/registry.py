"""Method names -> implementing classes. The only place that maps a name to code.

A config's ``method`` is a key below or a ``"package.module:Class"`` import path, so users add a
method by writing one class in one file (see README, "Adding a method"). Importing a module runs
its code, so a path other than a registered one is imported only when the config opts in with
``trust_custom_method: true`` (as ``trust_remote_code`` guards model code), and the class must be
an :class:`~ferret.algorithms.base.Algorithm` subclass. Without the opt-in nothing is imported,
neither at validation nor during ``snakemake -n``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from ferret.coercion import coerce, shown
from ferret.hints import did_you_mean

METHODS: dict[str, str] = {
    "ferret": "ferret.algorithms.ferret:Ferret",
    "fedavg": "baselines.fedavg:FedAvg",
    "fedzo": "baselines.fedzo:FedZO",
    "fedkseed": "baselines.fedkseed:FedKSeed",
    "fedkseed-pro": "baselines.fedkseed:FedKSeedPro",
    "fedit": "baselines.fedit:FedIT",
    "fedit-sgd": "baselines.fedit_sgd:FedITSGD",
    "fedptuning": "baselines.fedptuning:FedPTuning",
    "fedprompt": "baselines.fedprompt:FedPrompt",
}


class UnknownMethodError(ValueError):
    """An unknown method name or an unimportable class path."""


def check_name(name: str, trust_custom_method: bool = False) -> None:
    """Raise UnknownMethodError for an unknown name or an untrusted class path; imports nothing."""
    if name in METHODS or name in METHODS.values():
        return
    if ":" not in name:
        raise UnknownMethodError(f"unknown method '{name}'{did_you_mean(name, METHODS)}; known: {', '.join(METHODS)}")
    if not trust_custom_method:
        raise UnknownMethodError(f"method '{name}' is a custom class path: its module is imported (and runs) "
                                 "only with trust_custom_method: true")


def resolve(name: str, trust_custom_method: bool = False) -> type:
    """The class registered under ``name`` (or, when trusted, found at ``module:Class``)."""
    from ferret.algorithms.base import Algorithm

    check_name(name, trust_custom_method)
    module_name, _, class_name = METHODS.get(name, name).partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except Exception as e:  # noqa: BLE001 - any error of user code is one line naming the method
        raise UnknownMethodError(f"method '{name}' cannot be imported: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise UnknownMethodError(f"method '{name}' is not an Algorithm subclass (got {type(cls).__name__})")
    return cls


def options_for(name: str, method_options: dict[str, Any], trust_custom_method: bool = False) -> Any:
    """Build and validate the method's Options from ``method_options[name]`` (a mapping)."""
    for key in method_options:
        check_name(key, trust_custom_method)
    cls = resolve(name, trust_custom_method)
    raw = method_options.get(name) or {}
    if not isinstance(raw, dict):
        raise UnknownMethodError(f"method_options.{name}={shown(raw)}: expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls.Options)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise UnknownMethodError(f"unknown option method_options.{name}.{key}{did_you_mean(key, fields)}")
        kind = type(fields[key].default)
        if kind in (int, float) and isinstance(value, str):  # YAML 1.1 reads '1e-3' as a string
            value = coerce(f"method_options.{name}.{key}", value, kind, UnknownMethodError)
        values[key] = value
    try:
        return cls.Options(**values)
    except (TypeError, ValueError) as e:
        raise UnknownMethodError(f"method_options.{name}: {e}") from None
