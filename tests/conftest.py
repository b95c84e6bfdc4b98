"""Shared fixtures: the tiny model and tokenizer, cached once per session under resources/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The session's smoke workflow on a one-node SLURM cluster, shared by test_slurm.py and
# test_snakemake_report.py (so CI runs the grid once).
from slurm_smoke import slurm_smoke  # noqa: F401  (a fixture: pytest finds it by name here)

ROOT = Path(__file__).resolve().parents[1]
# The tokenizer cache (converted once from the embedded GGUF) is shared by every test that
# builds the tiny model: passed as `resources=` / `--resources` (the workflow's `resources` key);
# tests that need isolation pass their own folder.
RESOURCES = ROOT / "resources"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Runs in tests log nowhere but their CSV; tests/test_wandb.py sets the mode it checks.
os.environ["WANDB_MODE"] = "disabled"
# The larger real samples (Natural Instructions, GSM8K, CodeAlpaca) and the maintainers' reference
# copy of the paper's numbers live outside the project, in ../shared (or $FERRET_SHARED); a fresh
# clone has none, so their tests skip, unless FERRET_REQUIRE_SHARED=1 says they must run (.ci/run).
SHARED = Path(os.environ.get("FERRET_SHARED", ROOT.parent / "shared"))
REQUIRE_SHARED = os.environ.get("FERRET_REQUIRE_SHARED", "") == "1"


def shared_path(path: Path, what: str) -> Path:
    """``path`` if it exists; else skip with the reason (fail when FERRET_REQUIRE_SHARED=1)."""
    if not path.exists():
        message = f"{what} not found at {path} (set FERRET_SHARED to the folder holding data/ and reference/)"
        if REQUIRE_SHARED:
            pytest.fail(f"FERRET_REQUIRE_SHARED=1 but {message}")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def written_data(tmp_path_factory) -> Path:
    """Small data sets in the real formats, written by tests/real_formats.py."""
    from real_formats import write_all

    return write_all(tmp_path_factory.mktemp("real-formats"))


@pytest.fixture(scope="session", params=["written", pytest.param("shared", marks=pytest.mark.shared_data)])
def data(request, written_data) -> Path:
    """A folder in the layout of ../shared/data: the written formats, then the real samples."""
    if request.param == "written":
        return written_data
    return shared_path(SHARED / "data" / "natural-instructions", "real data samples").parent


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny random-init model, seed 0."""
    from ferret.models import load_model_and_tokenizer

    model, tokenizer, _ = load_model_and_tokenizer("tiny", seed=0, resources=RESOURCES)
    return model, tokenizer


def setup_method(tiny, method: str, **overrides):
    """(cfg, algorithm, its set-up model, tokenizer, tokenized clients) for ``method`` on a copy of
    the tiny model with ``tiny_overrides(**overrides)``."""
    import copy

    from ferret.algorithms import registry
    from ferret.config import load_config
    from ferret.data.prompts import tokenize_example
    from ferret.data.synthetic import build_synthetic

    model, tokenizer = tiny
    cfg = load_config(None, tiny_overrides(method=method, **overrides))
    algo = registry.resolve(method)(cfg, registry.options_for(method, cfg.method_options))
    model = algo.setup(copy.deepcopy(model), tokenizer)
    data = build_synthetic(cfg.num_clients, cfg.train_per_client, cfg.eval_per_task, cfg.seed)
    clients = [[tokenize_example(tokenizer, ex, cfg.max_length) for ex in c] for c in data.clients]
    return cfg, algo, model, tokenizer, clients


def tiny_overrides(**extra: object) -> list[str]:
    """Overrides for a seconds-long run of the tiny model."""
    base = {"model": "tiny", "num_clients": 4, "participation": 0.5, "rounds": 2, "local_steps": 2,
            "batch_size": 2, "train_per_client": 8, "eval_per_task": 2, "max_new_tokens": 4,
            "lr": 0.05, "K": 16}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def with_overrides(base: list[str], *extra: str) -> list[str]:
    """``base`` with each key=value of ``extra`` in place of the same key (the CLI refuses a key twice)."""
    keys = {e.split("=", 1)[0] for e in extra}
    return [o for o in base if o.split("=", 1)[0] not in keys] + list(extra)


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


def pytest_terminal_summary(terminalreporter) -> None:
    """Name the tests that read ../shared and their outcome, so a CI log shows they ran."""
    outcomes = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if "shared_data" in getattr(report, "keywords", {}) and report.when in ("call", "setup"):
                outcomes.setdefault(report.nodeid, outcome)
    if outcomes:
        counts = {o: sum(v == o for v in outcomes.values()) for o in sorted(set(outcomes.values()))}
        terminalreporter.write_sep("-", f"tests on the shared real data ({SHARED}): "
                                        + ", ".join(f"{n} {o}" for o, n in counts.items()))
        for nodeid, outcome in sorted(outcomes.items()):
            terminalreporter.write_line(f"{outcome:8s} {nodeid}")
