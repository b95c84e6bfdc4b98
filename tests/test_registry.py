"""Every registered method name runs end to end through `ferret run --out DIR method=NAME`."""

from __future__ import annotations

import csv
import json
import math

import pytest
from conftest import tiny_overrides

from ferret.algorithms import registry
from ferret.cli import main


@pytest.mark.parametrize("name", sorted(registry.METHODS))
def test_registered_name_runs_from_the_cli(tmp_path, name):
    out = tmp_path / name
    assert main(["run", "--out", str(out), *tiny_overrides(method=name, rounds=1, lr=1e-3)]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "ok" and record["config"]["method"] == name
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["round"]) for r in rows] == [0, 1]
    assert all(r["method"] == name for r in rows)
    assert int(rows[1]["uplink_bytes"]) > 0
    assert math.isfinite(float(rows[1]["eval_loss"])) and math.isfinite(float(rows[1]["train_loss"]))


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(registry.UnknownMethodError, match="fedkseed-pro"):
        registry.resolve("fedkseed-por")
