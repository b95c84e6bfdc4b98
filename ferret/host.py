"""What the machine, not the run config, gives a run: the resources folder, W&B defaults, secrets.

The process environment is read in one place, the command line (ferret/cli.py), which builds a
:class:`Host` with :meth:`Host.from_env` and passes it down; no other module reads it, so a run's
behaviour follows from its config and this one explicit object (tests/test_no_env_reads.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ferret.models import DEFAULT_RESOURCES
from ferret.redaction import secret_values
from ferret.wandb_sink import DEFAULT_WANDB_PROJECT, resolve_wandb_mode


@dataclass(frozen=True)
class Host:
    """The defaults (``Host()``) are a library call's: no secrets known, and ``wandb_mode=auto``
    logs nowhere, since only the CLI knows whether a W&B key is configured."""

    resources: Path = DEFAULT_RESOURCES  # cache of converted models and tokenizers (ferret/model_cache.py)
    wandb_auto: str = "disabled"  # what wandb_mode=auto resolves to
    wandb_project: str = DEFAULT_WANDB_PROJECT  # used when the run config's wandb_project is empty
    wandb_entity: str | None = None  # used when the run config's wandb_entity is empty
    secrets: tuple[str, ...] = ()  # values redacted from run.json, W&B config and warnings

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, resources: Path = DEFAULT_RESOURCES) -> Host:
        """The host as ``env`` (the CLI passes ``os.environ``) describes it."""
        return cls(resources=Path(resources), wandb_auto=resolve_wandb_mode("auto", env),
                   wandb_project=env.get("WANDB_PROJECT") or DEFAULT_WANDB_PROJECT,
                   wandb_entity=env.get("WANDB_ENTITY") or None, secrets=tuple(secret_values(env)))

    def wandb_mode(self, configured: str) -> str:
        """online / offline / disabled for a run configured with ``configured``."""
        return self.wandb_auto if configured == "auto" else configured
