"""Secrets kept out of the logs and outputs: run.json (all but its recorded config), the traceback,
the W&B config and warnings pass through :func:`redact`.

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
_EDGE_BEFORE, _EDGE_AFTER = r"(?<![A-Za-z0-9_])", r"(?![A-Za-z0-9_])"  # whole-token matches only


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of the secret-looking variables of ``env`` (WANDB_API_KEY, HF_TOKEN, ...), longest first."""
    return sorted({v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN},
                  key=len, reverse=True)


def redact(data: Any, secrets: Sequence[str]) -> Any:
    """A copy of ``data`` (nested dicts/lists/strings) with every whole-token occurrence of a value in
    ``secrets`` (of at least 8 characters) replaced by '***': a secret is matched where no letter,
    digit or '_' touches it, so a word that merely contains a secret-like string is left alone."""
    # Longest first: a secret containing another is replaced whole.
    kept = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True)
    if not kept:
        return data
    pattern = re.compile(_EDGE_BEFORE + "(?:" + "|".join(map(re.escape, kept)) + ")" + _EDGE_AFTER)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub("***", value)
        if isinstance(value, Mapping):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return value

    return walk(data)
