"""Method names -> implementing classes. The only place that maps a name to code.

A config's ``method`` is a key below or any ``"package.module:Class"`` import path, so users
add a method by writing one class in one file (see README, "Adding a method").
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any

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


def resolve(name: str) -> type:
    """The class registered under ``name`` (or found at ``module:Class``)."""
    path = METHODS.get(name)
    if path is None and ":" not in name:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownMethodError(f"unknown method '{name}'{hint}; known: {', '.join(METHODS)}")
    module_name, _, class_name = (path or name).partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise UnknownMethodError(f"method '{name}' cannot be imported: {e}") from None


def options_for(name: str, method_options: dict[str, Any]) -> Any:
    """Build and validate the method's Options from ``method_options[name]`` (a mapping)."""
    for key in method_options:
        if key not in METHODS and ":" not in key:
            raise UnknownMethodError(f"method_options.{key}: unknown method '{key}'")
    cls = resolve(name)
    raw = method_options.get(name) or {}
    if not isinstance(raw, dict):
        raise UnknownMethodError(f"method_options.{name}={raw!r}: expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls.Options)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UnknownMethodError(f"unknown option method_options.{name}.{key}{hint}")
        kind = type(fields[key].default)
        if kind in (int, float) and isinstance(value, str):
            try:
                value = kind(value)
            except ValueError:
                raise UnknownMethodError(f"method_options.{name}.{key}={value!r}: expected {kind.__name__}") from None
        values[key] = value
    try:
        return cls.Options(**values)
    except (TypeError, ValueError) as e:
        raise UnknownMethodError(f"method_options.{name}: {e}") from None
