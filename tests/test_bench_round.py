"""ferret bench round: one round per method on the tiny LLaMA preset, through the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from ferret.bench import round as R
from ferret.cli import main
from ferret.config import ConfigError

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
METHODS = ["ferret", "fedkseed", "fedzo", "fedavg"]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, str]:
    out = tmp_path_factory.mktemp("round")
    rc = main(["bench", "round", "--preset", "tiny", "--methods", "ferret:3,fedkseed:4,fedzo:4,fedavg:3",
               "--ferret-K", "16", "--fedkseed-K", "64", "--seq-len", "8", "--threads", "1",
               "--reference", str(REFERENCE), "--out", str(out)])
    assert rc == 0
    return pd.read_csv(out / "round.csv"), (out / "round.md").read_text()


def test_columns_and_rows(table: tuple[pd.DataFrame, str]) -> None:
    df, md = table
    assert list(df.columns) == R.COLUMNS
    assert df["method"].tolist() == METHODS
    assert df["steps"].tolist() == [3, 4, 4, 3]
    assert df.set_index("method").loc[["ferret", "fedkseed"], "K"].tolist() == [16, 64]
    assert df.set_index("method").loc[["fedzo", "fedavg"], "K"].isna().all()
    assert (df["d"] == df["d"].iloc[0]).all() and df["d"].iloc[0] > 1000
    assert (df[["local_s", "aggregation_s", "peak_mem_gb", "uplink_bytes", "downlink_bytes"]] > 0).all().all()
    assert (df["peak_extra_gb"] < df["peak_mem_gb"]).all()
    assert " bench round " in md and "machine:" in md and "| fedkseed" in md


def test_phases_sum_to_overall(table: tuple[pd.DataFrame, str]) -> None:
    df, _ = table
    assert (df["local_s"] + df["aggregation_s"]).tolist() == pytest.approx(df["overall_s"].tolist(), rel=1e-12)
    assert (df["encode_s"] <= df["local_s"]).all()  # encode counts inside local, as in the paper
    ferret = df.set_index("method").loc["ferret", "overall_s"]
    assert df["overall_x_ferret"].tolist() == pytest.approx((df["overall_s"] / ferret).tolist())


def test_uplinks_are_the_methods_messages(table: tuple[pd.DataFrame, str]) -> None:
    up = table[0].set_index("method")["uplink_bytes"]
    # seed-based uplinks are far smaller than the full-model ones (d floats), which are equal
    assert up["fedzo"] == up["fedavg"] > 4 * table[0]["d"].iloc[0]
    assert up["ferret"] < up["fedavg"] / 10 and up["fedkseed"] < up["fedavg"] / 10


def test_paper_columns_come_from_reference_csvs(table: tuple[pd.DataFrame, str]) -> None:
    df = table[0].set_index("method")
    cost = pd.read_csv(REFERENCE / "cost_per_round.csv")
    cost = cost[(cost["table"] == "Table 4") & (cost["model"] == "llama-3b")].set_index("method")
    mem = pd.read_csv(REFERENCE / "table6_peak_memory.csv")
    mem = mem[mem["model"] == "llama-3b"].set_index("method")
    for m in METHODS:
        for col in ("local_s", "aggregation_s", "overall_s"):
            assert df.loc[m, f"paper_{col}"] == cost.loc[m, col]
        expected = mem.loc[m, "peak_gpu_gb"] if m in mem.index else math.nan
        assert df.loc[m, "paper_peak_mem_gb"] == pytest.approx(expected, nan_ok=True)
    assert math.isnan(df.loc["fedzo", "paper_peak_mem_gb"])  # Table 6 has no FedZO
    assert df.loc["fedkseed", "paper_overall_x_ferret"] == pytest.approx(
        cost.loc["fedkseed", "overall_s"] / cost.loc["ferret", "overall_s"])


def test_paper_columns_follow_an_edited_reference(tmp_path: Path) -> None:
    """The paper columns are read, not remembered: edit a copy and the rows follow."""
    cost = pd.read_csv(REFERENCE / "cost_per_round.csv")
    cost.loc[(cost["table"] == "Table 4") & (cost["method"] == "ferret"), "local_s"] = 123.0
    cost.to_csv(tmp_path / "cost_per_round.csv", index=False)
    (tmp_path / "table6_peak_memory.csv").write_text((REFERENCE / "table6_peak_memory.csv").read_text())
    rows = [{"method": "ferret", "overall_s": 1.0}, {"method": "fedkseed", "overall_s": 2.0}]
    R.paper_columns(rows, tmp_path)
    assert rows[0]["paper_local_s"] == 123.0 and rows[1]["overall_x_ferret"] == 2.0


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        R.parse_methods("ferret:0", {})
    with pytest.raises(ConfigError, match="expected method:steps"):
        R.parse_methods("ferret", {})
    assert main(["bench", "round", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert main(["bench", "round", "--methods", "fedsgd:3", "--out", str(tmp_path)]) == 2
    assert main(["bench", "round", "--reference", str(tmp_path), "--out", str(tmp_path)]) == 2


def test_llama_3b_preset_is_open_llama_3b_shape() -> None:
    """On the meta device (no memory): the preset's parameter count is the LLaMA formula's for
    open_llama_3b's dimensions, the d ~ 3.4e9 of the paper's Table 4 model."""
    import torch

    model = R.build_model("llama-3b", torch.device("meta"), torch.float32)
    c = model.config
    h, i, L, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    assert (h, i, L, V, c.num_attention_heads) == (3200, 8640, 26, 32000, 32)
    formula = 2 * V * h + L * (4 * h * h + 3 * h * i + 2 * h) + h  # untied embeddings, q/k/v/o, MLP, norms
    assert sum(p.numel() for p in model.parameters()) == formula
    assert 3.3e9 < formula < 3.5e9


def test_memory_and_bookkeeping_columns(table: tuple[pd.DataFrame, str]) -> None:
    df = table[0]
    assert df["bookkeeping_s"].tolist() == pytest.approx((df["encode_s"] + df["aggregation_s"]).tolist())
    assert df["bookkeeping_x_train"].tolist() == pytest.approx((df["bookkeeping_s"] / df["train_s"]).tolist())
    # on CPU the device and the host are one memory: the two extra peaks are the same number
    assert df["device_extra_P"].tolist() == pytest.approx(df["host_extra_P"].tolist())
    assert df["device_extra_P"].tolist() == pytest.approx((df["peak_extra_gb"] / df["P_gib"]).tolist())


@pytest.mark.parametrize("preset,low,high,dtype", [("cpu-mid", 0.40e9, 0.46e9, "float32"),
                                                   ("llama2-13b", 12.9e9, 13.1e9, "bfloat16")])
def test_paper_scale_presets_have_their_shape_and_defaults(preset, low, high, dtype) -> None:
    import torch

    model = R.build_model(preset, torch.device("meta"), getattr(torch, dtype))
    assert low < sum(p.numel() for p in model.parameters()) < high
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}
    methods, default_dtype, seq_len = R.PRESET_DEFAULTS[preset]
    assert default_dtype == dtype and {s.method for s in R.parse_methods(methods, {})} >= {
        "ferret", "fedavg", "fedzo", "fedkseed"}


def test_round_json_holds_the_command_and_rows(tmp_path: Path) -> None:
    import json

    rc = main(["bench", "round", "--preset", "tiny", "--methods", "fedavg:1", "--seq-len", "4", "--threads", "1",
               "--warmup", "0", "--reference", str(REFERENCE), "--out", str(tmp_path)])
    assert rc == 0
    got = json.loads((tmp_path / "round.json").read_text())
    assert "--preset tiny" in got["command"] and "--dtype float32" in got["command"]
    assert [r["method"] for r in got["rows"]] == ["fedavg"] and got["rows"][0]["P_gib"] > 0
