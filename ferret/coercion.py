"""The one conversion of YAML and command-line values to a typed field (run config and method options)."""

from __future__ import annotations

from typing import Any


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
    raise error(f"{key}={value!r}: expected {kind.__name__}")
