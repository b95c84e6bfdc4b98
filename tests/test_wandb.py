"""W&B: offline by default without a key, nothing when disabled, never a failed run; what an
offline run holds, read back the way W&B's own tools read it (`wandb leet inspect --json`, the
SDK's reader of the .wandb transaction log: wandb 0.31 has no Python reader and the public API
needs a server)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides

from ferret.config import load_config
from ferret.engine import run
from ferret.host import Host
from ferret.wandb_sink import X_AXES, WandbSink, log_report, resolve_wandb_mode


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


def read_back(run_dir: Path) -> list[dict]:
    """Every record of an offline run's .wandb log, as W&B's inspector prints them."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    proc = subprocess.run([str(wandb_cli), "leet", "inspect", "--json", str(run_dir)],
                          capture_output=True, text=True, timeout=120, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def of_type(records: list[dict], kind: str) -> list[dict]:
    return [r[kind] for r in records if r["type"] == kind]


def _number(cell: str) -> float | None:
    return None if cell == "" else float(cell)


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """A two-round run in W&B's auto mode without a key (so offline), and its records read back."""
    folder = tmp_path_factory.mktemp("wandb-run")
    patch = pytest.MonkeyPatch()
    for var in ("WANDB_MODE", "WANDB_API_KEY", "NETRC"):
        patch.delenv(var, raising=False)
    for var, sub in (("HOME", "home"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache")):
        patch.setenv(var, str(folder / sub))
    try:
        out = folder / "run"
        # What the CLI does: the host read from the (patched) environment resolves auto.
        record = run(load_config(None, tiny_overrides(rounds=2, experiment="wb-readback",
                                                      wandb_mode="auto")), out, host=Host.from_env(os.environ))
    finally:
        patch.undo()
    offline = list((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, offline
    return out, record, read_back(offline[0])


def test_auto_without_key_leaves_an_offline_run_folder(offline_run):
    out, record, records = offline_run
    assert record["status"] == "ok" and record["wandb_mode"] == "offline"
    assert list(next((out / "wandb").glob("offline-run-*")).glob("*.wandb"))  # the history W&B would sync
    assert of_type(records, "exit")[-1]["exit_code"] == 0


def test_run_identity_and_config_read_back(offline_run):
    out, record, records = offline_run
    (info,) = of_type(records, "run")
    assert (info["run_group"], info["job_type"], info["display_name"]) == ("wb-readback", "ferret", "ferret-seed0")
    config = {k: v for k, v in info["config"]["update"].items() if k != "_wandb"}
    assert config == json.loads((out / "run.json").read_text())["config"]


def test_every_history_row_matches_metrics_csv(offline_run):
    out, _, records = offline_run
    history = [h["item"] for h in of_type(records, "history")]
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [h["round"] for h in history] == [int(r["round"]) for r in rows] == [0, 1, 2]
    elapsed = 0.0
    for item, row in zip(history, rows):
        for column, cell in row.items():
            value = _number(cell) if column not in ("run_id", "method") else None
            if value is None:  # text, or not measured this round: not in the history either
                assert column not in item, (row["round"], column)
            else:
                assert item[column] == pytest.approx(value, rel=1e-12), (row["round"], column)
        elapsed += _number(row["t_round_s"]) or 0.0
        assert item["elapsed_s"] == pytest.approx(elapsed, rel=1e-12)


def test_every_evaluations_generations_are_a_table_beside_its_round(offline_run):
    from ferret.csv_sink import EXAMPLE_COLUMNS

    out, _, records = offline_run
    with (out / "examples.csv").open() as f:
        kept = list(csv.DictReader(f))
    tables = {h["item"]["round"]: h["item"]["examples.path"] for h in of_type(records, "history")
              if h["item"].get("examples._type") == "table-file"}
    assert sorted(tables) == sorted({int(r["round"]) for r in kept}) == [0, 2]  # the evaluated rounds
    files = next((out / "wandb").glob("offline-run-*")) / "files"
    for round_, path in tables.items():
        table = json.loads((files / path).read_text())
        assert table["columns"] == EXAMPLE_COLUMNS
        rows = [r for r in kept if int(r["round"]) == round_]
        # Cell for cell as examples.csv writes them (floats by repr, as str() prints them).
        assert [["" if v is None else str(v) for v in row] for row in table["data"]] == \
            [[r[c] for c in EXAMPLE_COLUMNS] for r in rows]


def test_summary_matches_run_json(offline_run):
    out, _, records = offline_run
    summary: dict = {}
    for update in of_type(records, "summary"):
        summary.update(update.get("update", {}))
    saved = json.loads((out / "run.json").read_text())
    expected = {**{k: v for k, v in saved["final"].items() if v is not None},
                "wall_clock_s": saved["wall_clock_s"], "status": saved["status"]}
    assert {k: summary.get(k) for k in expected} == expected


def test_charts_plot_against_round_with_bytes_and_wall_clock_as_x_axes(offline_run):
    _, _, records = offline_run
    metrics = of_type(records, "metric")
    defined = {m["name"] for m in metrics if m.get("name")}
    assert set(X_AXES) <= defined
    assert {"round", "cum_bytes", "elapsed_s"} == set(X_AXES)
    (default_axis,) = [m for m in metrics if m.get("glob_name") == "*"]
    assert default_axis["step_metric"] == "round"


def test_a_resumed_run_continues_the_wall_clock_axis(no_key, tmp_path):
    before = [{"round": 0, "t_round_s": None}, {"round": 1, "t_round_s": 2.5}]  # a checkpoint's rows
    sink = WandbSink(mode="offline", project="", entity="", group="g", job_type="ferret", name="r",
                     config={}, folder=tmp_path, run_key="resumed1", rows=before)
    sink.log({"round": 2, "t_round_s": 1.25, "cum_bytes": 10})
    sink.finish({}, "ok")
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    (item,) = [h["item"] for h in of_type(read_back(offline), "history")]
    assert (item["round"], item["elapsed_s"]) == (2, 3.75)


def test_report_run_carries_its_tables_and_figures(no_key, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = [tmp_path / "out" / "main.md", tmp_path / "out" / "main.tex", tmp_path / "out" / "convergence.png"]
    files[0].parent.mkdir()
    files[0].write_text("| method | loss |\n|---|---|\n| ferret | 1.0 |\n")
    files[1].write_text("\\begin{tabular}{ll}\\end{tabular}\n")
    plt.plot([0, 1], [1, 0])
    plt.savefig(files[2])
    plt.close()
    log_report(files, kind="tables", mode="offline", experiment="wb-report", folder=tmp_path)
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    records = read_back(offline)
    (info,) = of_type(records, "run")
    assert (info["run_group"], info["job_type"], info["display_name"]) == ("wb-report", "report", "wb-report-tables")
    (artifact,) = of_type(records, "artifact")
    assert artifact["name"] == "wb-report-tables" and artifact["type"] == "report"
    entries = {Path(e["path"]).name for e in artifact["manifest"]["contents"]}
    assert entries == {p.name for p in files}
    logged = {k: v for h in of_type(records, "history") for k, v in h["item"].items()}
    assert logged.get("convergence._type") == "image-file"  # the figure; the tables are artifact files


def test_disabled_writes_no_wandb_files(no_key, tmp_path):
    out = tmp_path / "run"
    record = run(load_config(None, tiny_overrides(rounds=1, wandb_mode="disabled")), out)
    assert record["status"] == "ok"
    assert not (out / "wandb").exists()
    assert sorted(p.name for p in out.iterdir()) == ["examples.csv", "metrics.csv", "run.json"]


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
