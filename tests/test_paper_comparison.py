"""Paper-vs-ours Rouge-L comparison: verdicts against independently computed standard errors."""

from __future__ import annotations

import math
import statistics

import pandas as pd

from ferret.report import tables
from ferret.report.paper import paper_comparison

PAPER_STD, PAPER_N = 2.0, 4
OURS = {"near": [0.30, 0.32, 0.34], "far": [0.30, 0.31, 0.32], "fresh": [0.25, 0.27]}


def _runs() -> pd.DataFrame:
    rows = []
    for method, values in OURS.items():
        for seed, v in enumerate(values):
            run = f"{method}-{seed}"
            rows.append(dict(run_id=run, round=0, dataset="dolly", model="m", method=method, K=8,
                             num_clients=4, seed=seed, rouge_l=0.01, status="ok"))
            rows.append(dict(run_id=run, round=5, dataset="dolly", model="m", method=method, K=8,
                             num_clients=4, seed=seed, rouge_l=v, status="ok"))
    return pd.DataFrame(rows)


def _se(values: list[float]) -> float:
    pct = [100 * v for v in values]
    return math.sqrt(statistics.stdev(pct) ** 2 / len(pct) + PAPER_STD ** 2 / PAPER_N)


def _reference(tmp_path, means: dict[str, float]) -> None:
    lines = ["dataset,model,method,rouge_l_mean,rouge_l_std,n_seeds,source,note"]
    lines += [f"dolly,m,{m},{v},{PAPER_STD},{PAPER_N},test," for m, v in means.items()]
    (tmp_path / "table2_rouge_l.csv").write_text("\n".join(lines) + "\n")


def test_verdicts_in_units_of_the_combined_standard_error(tmp_path):
    near_mean = 100 * statistics.mean(OURS["near"])
    far_mean = 100 * statistics.mean(OURS["far"])
    # paper values placed 0.9 se and 3 se away from ours; "missing" is a paper cell we did not run
    _reference(tmp_path, {"near": near_mean + 0.9 * _se(OURS["near"]),
                          "far": far_mean - 3.0 * _se(OURS["far"]), "missing": 20.0})
    t = paper_comparison(_runs(), reference=tmp_path)
    assert t.loc[("dolly", "m", "near"), "verdict"] == "within 1σ"
    assert t.loc[("dolly", "m", "far"), "verdict"] == "off"
    assert t.loc[("dolly", "m", "fresh"), "verdict"] == "no paper value"
    assert t.loc[("dolly", "m", "missing"), "verdict"] == "not run"
    far = t.loc[("dolly", "m", "far")]
    assert math.isclose(far["se"], _se(OURS["far"]))
    assert math.isclose(far["difference"], 3.0 * _se(OURS["far"]))
    assert far["n ours"] == 3 and far["n paper"] == PAPER_N


def test_two_sigma_band_and_failed_runs_left_out(tmp_path):
    df = _runs()
    # a failed seed with a wild score must not move the mean
    df = pd.concat([df, pd.DataFrame([dict(run_id="near-9", round=5, dataset="dolly", model="m", method="near",
                                           K=8, num_clients=4, seed=9, rouge_l=0.99, status="failed")])])
    _reference(tmp_path, {"near": 100 * statistics.mean(OURS["near"]) + 1.5 * _se(OURS["near"])})
    t = paper_comparison(df, reference=tmp_path)
    assert t.loc[("dolly", "m", "near"), "verdict"] == "within 2σ"
    assert t.loc[("dolly", "m", "near"), "n ours"] == 3


def test_write_tables_writes_the_comparison(tmp_path):
    _reference(tmp_path, {"near": 30.0})
    df = _runs().assign(t_local_s=1.0, t_encode_s=0.0, t_aggregate_s=0.1, clients=4,
                        uplink_bytes_per_client=10, downlink_bytes_per_client=10, cum_bytes=100, eval_loss=1.0)
    written = tables.write_tables(df, tmp_path / "out", reference=tmp_path)
    text = written["paper_comparison"].read_text()
    assert "within" in text or "off" in text
    assert (tmp_path / "out" / "paper_comparison.tex").is_file()
