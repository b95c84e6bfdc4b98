"""Shared fixtures: the tiny model and tokenizer, cached once per session under resources/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The session's smoke workflow on a one-node SLURM cluster, shared by test_slurm.py and
# test_snakemake_report.py (so CI runs the grid once).
from slurm_smoke import slurm_smoke  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
# The tokenizer cache (converted once from the embedded GGUF) is shared by every test that
# builds the tiny model: passed as `resources=` / `--resources` (the workflow's `resources` key);
# tests that need isolation pass their own folder.
RESOURCES = ROOT / "resources"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Runs in tests log nowhere but their CSV; tests/test_wandb.py sets the mode it checks.
os.environ["WANDB_MODE"] = "disabled"


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny random-init model, seed 0."""
    from ferret.models import load_model_and_tokenizer

    model, tokenizer, _ = load_model_and_tokenizer("tiny", seed=0, resources=RESOURCES)
    return model, tokenizer


def tiny_overrides(**extra: object) -> list[str]:
    """Overrides for a seconds-long run of the tiny model."""
    base = {"model": "tiny", "num_clients": 4, "participation": 0.5, "rounds": 2, "local_steps": 2,
            "batch_size": 2, "train_per_client": 8, "eval_per_task": 2, "max_new_tokens": 4,
            "lr": 0.05, "K": 16}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def count_generated_entries(monkeypatch) -> dict[str, int]:
    """Count every basis entry generated from here on ({"entries": n}), by the reference path
    (projection.basis_chunk) and by the fused kernels, which make entries without it."""
    from ferret import projection

    counter = {"entries": 0}
    real = projection.basis_chunk

    def spy(kind, keys, start, length, d):
        counter["entries"] += keys.shape[0] * length
        return real(kind, keys, start, length, d)

    monkeypatch.setattr(projection, "basis_chunk", spy)
    fused = projection.fused_kernels  # the fused kernels make entries without basis_chunk
    real_project, real_rebuild = fused.project, fused.reconstruct

    def project_spy(x, keys, kind):
        counter["entries"] += keys.shape[0] * x.numel()
        return real_project(x, keys, kind)

    def rebuild_spy(coef, keys, kind, out):
        counter["entries"] += keys.shape[0] * out.numel()
        return real_rebuild(coef, keys, kind, out)

    monkeypatch.setattr(fused, "project", project_spy)
    monkeypatch.setattr(fused, "reconstruct", rebuild_spy)
    return counter
