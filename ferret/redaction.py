"""Secrets kept out of the records: run.json and the W&B config pass through :func:`redact`.

:func:`redact` replaces every value of the given secrets; the CLI collects them with
:func:`secret_values` from the secret-looking environment variables, ``*KEY*``, ``*TOKEN*``,
``*SECRET*``, ``*PASSWORD*`` (ferret/host.py). Nothing here reads or records the environment itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["redact", "secret_values"]

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_SECRET_LEN = 8  # shorter values ("1", "true") would redact innocent text


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of the secret-looking variables of ``env`` (WANDB_API_KEY, HF_TOKEN, ...), longest first."""
    return sorted({v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN},
                  key=len, reverse=True)


def redact(data: Any, secrets: Sequence[str]) -> Any:
    """A copy of ``data`` (nested dicts/lists/strings) with every value in ``secrets`` replaced by '***'."""
    secrets = sorted(secrets, key=len, reverse=True)  # a secret containing another is replaced whole
    if not secrets:
        return data

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, "***")
            return value
        if isinstance(value, Mapping):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return value

    return walk(data)
