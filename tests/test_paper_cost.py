"""Cost table in the paper's shape: our per-round seconds and communication beside the paper's."""

from __future__ import annotations

import math

import pandas as pd

from ferret.report.cost import paper_cost_table

# method -> (t_local_s, t_encode_s, t_aggregate_s, uplink B/client, downlink B/client), 4 clients a round
OURS = {"ferret": (8.0, 4.0, 2.0, 100, 300), "fedkseed": (40.0, 0.0, 10.0, 50, 150),
        "fedavg": (4.0, 0.0, 1.0, 4_000_000, 4_000_000)}
CLIENTS = 4


def _runs() -> pd.DataFrame:
    rows = []
    for method, (loc, enc, agg, up, down) in OURS.items():
        for r in (0, 1, 2):
            rows.append(dict(run_id=method, round=r, dataset="dolly", model="m", method=method, K=8, num_clients=4,
                             clients=CLIENTS, t_local_s=loc if r else 0.0, t_encode_s=enc if r else 0.0,
                             t_aggregate_s=agg if r else 0.0, uplink_bytes_per_client=up if r else 0,
                             downlink_bytes_per_client=down if r else 0))
    return pd.DataFrame(rows)


def _reference(tmp_path) -> None:
    (tmp_path / "cost_per_round.csv").write_text(
        "table,dataset,model,method,local_s,aggregation_s,overall_s,comm_params,source,note\n"
        "T,dolly,m,ferret,5.0,20.0,25.0,8.0e3,test,\n"
        "T,dolly,m,fedkseed,50.0,100.0,150.0,8.0e3,test,\n"
        "T,dolly,m,fedavg,2.0,0.5,2.5,6.0e9,test,\n")


def test_ours_in_the_papers_quantities_and_ratios_from_absolutes(tmp_path):
    _reference(tmp_path)
    t = paper_cost_table(_runs(), reference=tmp_path)
    ferret = t.loc[("dolly", "m", "ferret")]
    assert math.isclose(ferret["ours local s"], (8.0 + 4.0) / CLIENTS)  # projection counts as local work
    assert math.isclose(ferret["ours aggregation s"], 2.0)
    assert math.isclose(ferret["ours overall s"], 3.0 + 2.0)
    assert math.isclose(ferret["ours comm bytes"], 400)
    assert math.isclose(ferret["ours comm params"], 200)  # 16-bit parameters: bytes / 2
    assert ferret["paper overall s"] == 25.0
    ratio = t.loc[("dolly", "m", "ferret ratio")]
    assert math.isclose(ratio["ours overall s"], (40.0 / CLIENTS + 10.0) / 5.0)
    assert math.isclose(ratio["paper overall s"], 150.0 / 25.0)
    assert math.isclose(ratio["paper comm params"], 6.0e9 / 8.0e3)
    assert math.isclose(ratio["ours comm params"], 8_000_000 / 400)


def test_paper_only_setting_shows_up_with_our_side_empty(tmp_path):
    _reference(tmp_path)
    df = _runs().assign(dataset="gsm8k")
    t = paper_cost_table(df, reference=tmp_path)
    assert math.isnan(t.loc[("dolly", "m", "ferret"), "ours local s"])
    assert t.loc[("dolly", "m", "ferret"), "paper local s"] == 5.0
    assert math.isnan(t.loc[("gsm8k", "m", "ferret"), "paper local s"])
