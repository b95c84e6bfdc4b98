"""End-to-end runs of the engine on the tiny model: determinism, byte accounting, outputs."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import tiny_overrides

from ferret import comm
from ferret.config import load_config
from ferret.csv_sink import COLUMNS
from ferret.engine import run

TIMING = {"t_local_s", "t_encode_s", "t_aggregate_s", "t_eval_s", "t_round_s", "peak_mem_train_mb", "peak_mem_eval_mb"}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Ferret twice and FedAvg once, recording the serialised length of every message the engine
    counts (and checking that its count is that length)."""
    out = {}
    lengths: dict[str, list[int]] = {}
    real = comm.encoded_size
    for name, method in [("ferret_a", "ferret"), ("ferret_b", "ferret"), ("fedavg", "fedavg")]:
        seen: list[int] = []

        def spy(msg, seen=seen):
            size = real(msg)
            assert size == len(comm.encode(msg))
            seen.append(size)
            return size

        comm.encoded_size = spy
        try:
            folder = tmp_path_factory.mktemp(name)
            run(load_config(None, tiny_overrides(method=method, rounds=3)), folder)
        finally:
            comm.encoded_size = real
        out[name], lengths[name] = folder, seen
    return out, lengths


def test_outputs_and_columns(runs):
    folders, _ = runs
    rows = _rows(folders["ferret_a"] / "metrics.csv")
    assert list(rows[0]) == COLUMNS
    assert [r["round"] for r in rows] == ["0", "1", "2", "3"]
    record = json.loads((folders["ferret_a"] / "run.json").read_text())
    assert record["status"] == "ok"
    assert record["config"]["method"] == "ferret" and record["config"]["model"] == "tiny"
    assert record["versions"]["torch"] and record["hardware"]["device"] == "cpu"
    assert record["final"]["final_eval_loss"] == pytest.approx(float(rows[-1]["eval_loss"]))
    assert record["final"]["initial_rouge_l"] == pytest.approx(float(rows[0]["rouge_l"]))
    assert not list(folders["ferret_a"].glob(".*tmp"))  # no temporary files left behind


def test_same_config_gives_identical_metrics_apart_from_timing(runs):
    folders, _ = runs
    a, b = (_rows(folders[k] / "metrics.csv") for k in ("ferret_a", "ferret_b"))

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    assert strip(a) == strip(b)
    assert a[1]["train_loss"] != a[2]["train_loss"]  # rows actually carry per-round numbers


@pytest.mark.parametrize("name", ["ferret_a", "fedavg"])
def test_logged_bytes_equal_serialised_message_lengths(runs, name):
    folders, lengths = runs
    rows = _rows(folders[name] / "metrics.csv")[1:]
    seen = lengths[name]
    i = 0
    for row in rows:
        n = int(row["clients"])
        if name == "fedavg":  # one downlink, the same for every client, counted once per round
            down, up = [seen[i]] * n, seen[i + 1 : i + 1 + n]
            i += 1 + n
        else:
            down, up = seen[i : i + 2 * n : 2], seen[i + 1 : i + 2 * n : 2]  # engine alternates down, up
            i += 2 * n
        assert int(row["uplink_bytes"]) == sum(up)
        assert int(row["downlink_bytes"]) == sum(down)
    assert i == len(seen)
    assert int(rows[-1]["cum_bytes"]) == sum(int(r["uplink_bytes"]) + int(r["downlink_bytes"]) for r in rows)


def test_ferret_uplink_is_under_one_percent_of_fedavg(runs):
    folders, _ = runs
    ferret = _rows(folders["ferret_a"] / "metrics.csv")[1:]
    fedavg = _rows(folders["fedavg"] / "metrics.csv")[1:]
    for f, a in zip(ferret, fedavg):
        assert float(f["uplink_bytes_per_client"]) < 0.01 * float(a["uplink_bytes_per_client"])
    # FedAvg's message is the full float32 model: at least 4 bytes per parameter.
    assert float(fedavg[0]["uplink_bytes_per_client"]) > 4 * 3_000_000


def test_fedavg_training_lowers_the_loss(runs):
    folders, _ = runs
    rows = _rows(folders["fedavg"] / "metrics.csv")
    assert float(rows[-1]["eval_loss"]) < float(rows[0]["eval_loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_matches_cpu_run(tmp_path, runs):
    """The same code on device=cuda: bases are generated on the GPU from the same integer stream,
    so the run's losses agree with the CPU run up to float reduction order."""
    folders, _ = runs
    run(load_config(None, tiny_overrides(method="ferret", rounds=3, device="cuda")), tmp_path)
    cpu, gpu = _rows(folders["ferret_a"] / "metrics.csv"), _rows(tmp_path / "metrics.csv")
    assert [r["uplink_bytes"] for r in cpu] == [r["uplink_bytes"] for r in gpu]
    for a, b in zip(cpu, gpu):
        for key in ("train_loss", "eval_loss"):
            if a[key]:
                assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-3), (key, a["round"])
