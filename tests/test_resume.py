"""Checkpoint and resume, in process: every method's state round-trips, and a resumed run writes
the same metrics.csv as an uninterrupted one (timing and memory columns aside)."""

from __future__ import annotations

import csv
import json

import pytest

from ferret import checkpoint
from ferret.algorithms.registry import METHODS
from ferret.config import load_config
from ferret.engine import run

from conftest import tiny_overrides

TIMING = {"t_local_s", "t_encode_s", "t_aggregate_s", "t_eval_s", "t_round_s", "peak_mem_train_mb", "peak_mem_eval_mb"}
# Zeroth-order steps need a far smaller step size than the shared first-order lr (see their docstrings).
EXTRA = {"fedzo": ["method_options.fedzo.lr=1e-4"], "fedkseed": ["method_options.fedkseed.lr=1e-4"],
         "fedkseed-pro": ["method_options.fedkseed-pro.lr=1e-4"]}


class Interrupted(Exception):
    """Stands in for a crash right after a checkpoint."""


def _overrides(method: str, **extra: object) -> list[str]:
    base = dict(method=method, rounds=3, num_tasks=2, eval_per_task=1, eval_every=1, threads=1,
                checkpoint_every=1)
    base.update(extra)
    return tiny_overrides(**base) + ["method_options.ferret.basis=rademacher", *EXTRA.get(method, [])]


def _metrics(folder):
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _run_interrupted(monkeypatch, cfg, out, after_round: int) -> None:
    """Run until the checkpoint of ``after_round`` is written, then 'crash'."""
    real = checkpoint.save

    def save_then_crash(out_, round_, *args, **kwargs):
        path = real(out_, round_, *args, **kwargs)
        if round_ == after_round:
            raise Interrupted
        return path

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(Interrupted):
        run(cfg, out)
    monkeypatch.setattr(checkpoint, "save", real)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_resumes_to_the_uninterrupted_metrics(tmp_path, monkeypatch, method):
    cfg = load_config(None, _overrides(method))
    run(cfg, tmp_path / "straight")
    _run_interrupted(monkeypatch, cfg, tmp_path / "resumed", after_round=2)
    interrupted = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert interrupted["status"] == "failed"  # the crash is recorded, the checkpoints stay
    assert (tmp_path / "resumed" / "checkpoints" / "round-000002").is_dir()

    record = run(cfg, tmp_path / "resumed")
    assert record["status"] == "ok" and record["resumed_from"] == [2]
    straight = _metrics(tmp_path / "straight")
    assert [r["round"] for r in straight] == ["0", "1", "2", "3"]
    assert _metrics(tmp_path / "resumed") == straight
    assert record["final"] == json.loads((tmp_path / "straight" / "run.json").read_text())["final"]
    assert not (tmp_path / "resumed" / "checkpoints").exists()  # finished: checkpoints removed


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cfg = load_config(None, _overrides("ferret", rounds=4))
    out = tmp_path_factory.mktemp("reference")
    run(cfg, out)
    return cfg, _metrics(out)


def test_a_torn_checkpoint_is_skipped_for_the_one_before(tmp_path, monkeypatch, capsys, reference):
    cfg, expected = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=3)
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["round-000002", "round-000003"]  # the newest two kept
    state = root / "round-000003" / checkpoint.STATE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # a write the disk lost half of
    (root / ".round-000004.abc.tmp").mkdir()  # a checkpoint killed mid-write

    record = run(cfg, out)
    assert "ignoring checkpoint" in capsys.readouterr().err
    assert record["resumed_from"] == [2]
    assert _metrics(out) == expected


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path, monkeypatch, capsys, reference):
    cfg, _ = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=2)
    other = load_config(None, _overrides("ferret", rounds=4, lr=0.02))
    record = run(other, out)
    assert "lr" in capsys.readouterr().err
    assert "resumed_from" not in record
    fresh = tmp_path / "fresh"
    run(other, fresh)
    assert _metrics(out) == _metrics(fresh)


def test_threads_and_wandb_settings_do_not_block_a_resume(tmp_path, monkeypatch, reference):
    cfg, expected = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=1)
    again = load_config(None, _overrides("ferret", rounds=4, checkpoint_every=2, wandb_project="elsewhere"))
    assert run(again, out)["resumed_from"] == [1]
    assert _metrics(out) == expected


def test_checkpoints_hold_only_safetensors_and_json(tmp_path, monkeypatch, reference):
    cfg, _ = reference
    out = tmp_path / "run"
    _run_interrupted(monkeypatch, cfg, out, after_round=2)
    files = sorted(p.name for p in (out / "checkpoints").rglob("*") if p.is_file())
    assert files == ["meta.json", "meta.json", "state.safetensors", "state.safetensors"]
    meta = json.loads((out / "checkpoints" / "round-000002" / "meta.json").read_text())
    assert meta["round"] == 2 and [r["round"] for r in meta["rows"]] == [0, 1, 2]
    assert set(meta["rng"]) == {"python", "numpy"}


def test_checkpoint_every_zero_writes_none(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(checkpoint, "save", lambda *a, **k: seen.append(a[1]))
    run(load_config(None, _overrides("fedavg", rounds=2, checkpoint_every=0)), tmp_path)
    assert seen == []
