"""The one conversion of YAML and command-line values to a typed field (run config and method options),
and the bounded quoting of a value in an error message."""

from __future__ import annotations

import reprlib
from typing import Any

MAX_QUOTE = 200  # characters of a value quoted in an error message (then '...')
_REPR = reprlib.Repr()
# Nesting and element counts bounded too, so a deeply nested value is never expanded to be quoted.
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 6, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = MAX_QUOTE, MAX_QUOTE, MAX_QUOTE


def bounded(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` cut to ``limit`` characters, marked with '...' where cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(value: Any) -> str:
    """repr(value) for an error message, at most MAX_QUOTE characters however large ``value`` is."""
    return bounded(_REPR.repr(value))


def coerce(key: str, value: Any, kind: type, error: type[Exception] = ValueError) -> Any:
    """Convert a YAML or command-line value to ``kind``, or raise ``error`` naming it."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # also accepts '1e-3', which YAML 1.1 reads as a string
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif kind is dict:
        if isinstance(value, dict):
            return dict(value)
    raise error(f"{bounded(key)}={shown(value)}: expected {kind.__name__}")
