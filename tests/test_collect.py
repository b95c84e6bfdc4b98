"""collect: one long table of every valid run, invalid runs reported and skipped."""

from __future__ import annotations

import pandas as pd
import pytest

from ferret.atomic import write_json
from ferret.config import RunConfig
from ferret.csv_sink import COLUMNS, CsvTable
from ferret.report.collect import collect, write_all_runs


def _fake_run(folder, status="ok", **config):
    cfg = {**RunConfig().to_dict(), **config}
    sink = CsvTable(folder / "metrics.csv")
    for r in range(3):
        sink.log({"run_id": folder.name, "method": cfg["method"], "round": r, "eval_loss": 3.0 - r})
    write_json(folder / "run.json", {"run_id": folder.name, "status": status, "config": cfg})
    return folder


def test_collect_joins_rows_with_grid_values_and_skips_invalid_runs(tmp_path, capsys):
    a = _fake_run(tmp_path / "a", method="ferret", K=16, seed=0)
    b = _fake_run(tmp_path / "b", method="fedavg", K=64, seed=1, status="diverged")
    failed = _fake_run(tmp_path / "c", status="interrupted")  # not a result: skipped
    missing = tmp_path / "d"
    missing.mkdir()
    (missing / "metrics.csv").write_text("run_id,round\nd,0\n")
    torn = _fake_run(tmp_path / "e")
    (torn / "run.json").write_text('{"run_id": "e", "sta')  # a write cut short

    df = collect([a, b, failed, missing, torn])
    assert sorted(df["run_id"].unique()) == ["a", "b"]
    assert len(df) == 6
    assert df.loc[df["run_id"] == "a", "K"].unique().tolist() == [16]
    assert df.loc[df["run_id"] == "b", "status"].unique().tolist() == ["diverged"]
    assert set(COLUMNS) <= set(df.columns)
    # A failed run that finished no round is kept as one identity row, so the tables can mark it.
    (tmp_path / "f").mkdir()
    CsvTable(tmp_path / "f" / "metrics.csv").write()
    write_json(tmp_path / "f" / "run.json", {"run_id": "f", "status": "failed", "config": RunConfig().to_dict()})
    kept = collect([a, tmp_path / "f"])
    assert kept.loc[kept["run_id"] == "f", "status"].tolist() == ["failed"]
    err = capsys.readouterr().err
    assert "c: status interrupted" in err and "d: no valid run.json" in err and "e: no valid run.json" in err


def test_write_all_runs_roundtrips(tmp_path):
    runs = [_fake_run(tmp_path / f"r{i}", seed=i) for i in range(2)]
    out = tmp_path / "all_runs.csv"
    write_all_runs(runs, out)
    back = pd.read_csv(out)
    assert back["eval_loss"].tolist() == [3.0, 2.0, 1.0, 3.0, 2.0, 1.0]
    assert back["seed"].tolist() == [0, 0, 0, 1, 1, 1]


def test_collect_with_no_valid_run_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no valid runs"):
        collect([tmp_path])
