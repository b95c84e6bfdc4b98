"""W&B: offline by default without a key, nothing when disabled, never a failed run."""

from __future__ import annotations

import json

import pytest

from ferret.config import load_config
from ferret.engine import run
from ferret.tracking import resolve_wandb_mode

from conftest import tiny_overrides


def test_mode_resolution(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert resolve_wandb_mode("auto", home) == "offline"
    assert resolve_wandb_mode("auto", {**home, "WANDB_API_KEY": "x" * 40}) == "online"
    assert resolve_wandb_mode("auto", {**home, "WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}) == "disabled"
    assert resolve_wandb_mode("auto", {**home, "WANDB_MODE": "dryrun"}) == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    assert resolve_wandb_mode("auto", home) == "online"
    assert resolve_wandb_mode("disabled", {**home, "WANDB_API_KEY": "k"}) == "disabled"


@pytest.fixture
def no_key(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def test_auto_without_key_leaves_an_offline_run_folder(no_key, tmp_path):
    out = tmp_path / "run"
    record = run(load_config(None, tiny_overrides(rounds=1, wandb_mode="auto")), out)
    assert record["status"] == "ok" and record["wandb_mode"] == "offline"
    offline = list((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("*.wandb"))  # the history W&B would sync


def test_disabled_writes_no_wandb_files(no_key, tmp_path):
    out = tmp_path / "run"
    record = run(load_config(None, tiny_overrides(rounds=1, wandb_mode="disabled")), out)
    assert record["status"] == "ok"
    assert not (out / "wandb").exists()
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "run.json"]


def test_a_broken_wandb_never_fails_the_run(no_key, tmp_path, monkeypatch, capsys):
    wandb = pytest.importorskip("wandb")

    def broken(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(wandb, "init", broken)
    out = tmp_path / "run"
    record = run(load_config(None, tiny_overrides(rounds=1, wandb_mode="online")), out)
    assert record["status"] == "ok"
    assert "W&B logging off" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["status"] == "ok"
