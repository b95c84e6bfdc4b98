"""Main-table statistics on a fixture written here: t intervals over seeds and paired per-example
differences from Ferret, checked against scipy called directly (not ferret/report/stats.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from ferret.report import tables

SETTING = "synthetic / tiny"
N_EXAMPLES = 30
SEEDS = {"ferret": [0, 1, 2], "fedavg": [0, 1, 2], "fedzo": [0, 1]}
SHIFT = {"ferret": 0.0, "fedavg": 0.15, "fedzo": 0.005}  # fedavg clearly better, fedzo indistinguishable


def _fixture(tmp_path):
    """all_runs.csv (rounds 0..2 per run) and all_examples.csv (per-example rows of rounds 0 and 2)."""
    rng = np.random.default_rng(7)
    base = rng.uniform(0.1, 0.7, N_EXAMPLES)  # the examples' difficulty, shared by every method
    runs, examples = [], []
    for method, seeds in SEEDS.items():
        for seed in seeds:
            rid = f"{method}_s{seed}"
            scores = np.clip(base + SHIFT[method] + rng.normal(0, 0.05, N_EXAMPLES), 0, 1)
            losses = 2.0 - scores + rng.normal(0, 0.01, N_EXAMPLES)
            grid = {"run_id": rid, "experiment": "fx", "method": method, "model": "tiny", "dataset": "synthetic",
                    "num_clients": 4, "K": 16, "seed": seed, "status": "ok"}
            for r, (rouge, loss) in enumerate([(base.mean(), 2.5), (np.nan, 2.2), (scores.mean(), losses.mean())]):
                cost = {"clients": 2, "t_local_s": 1.0, "t_encode_s": 0.1, "t_aggregate_s": 0.1,
                        "uplink_bytes_per_client": 100, "downlink_bytes_per_client": 100, "cum_bytes": 400 * r}
                runs.append({**grid, **cost, "round": r, "rouge_l": rouge, "eval_loss": loss})
            for i in range(N_EXAMPLES):
                examples.append({**grid, "round": 0, "example": i, "rouge_l": base[i], "eval_loss": 2.5})
                examples.append({**grid, "round": 2, "example": i, "rouge_l": scores[i], "eval_loss": losses[i]})
    pd.DataFrame(runs).to_csv(tmp_path / "all_runs.csv", index=False)
    pd.DataFrame(examples).to_csv(tmp_path / "all_examples.csv", index=False)
    return pd.read_csv(tmp_path / "all_runs.csv"), pd.read_csv(tmp_path / "all_examples.csv")


def test_main_table_intervals_and_paired_marks_match_scipy(tmp_path):
    df, ex = _fixture(tmp_path)
    t = tables.main_table(df, examples=ex)
    final = ex[ex["round"] == 2]
    per_example = {m: final[final["method"] == m].groupby("example")["rouge_l"].mean().sort_index() for m in SEEDS}
    for method, seeds in SEEDS.items():
        finals = df[(df["method"] == method) & (df["round"] == 2)]
        for column, scale, digits in (("rouge_l", 100.0, 1), ("eval_loss", 1.0, 3)):
            x = finals[column].to_numpy() * scale
            low, high = st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))
            name = "Rouge-L 95% t" if column == "rouge_l" else "eval loss 95% t"
            assert t.loc[method, f"{SETTING}: {name}"] == f"[{low:.{digits}f}, {high:.{digits}f}]"
        if method == "ferret":
            assert t.loc[method, f"{SETTING}: Δ Rouge-L vs ferret (pts, paired t, 95%)"] == "ref"
            continue
        d = (per_example[method] - per_example["ferret"]).to_numpy()
        test = st.ttest_rel(per_example[method], per_example["ferret"])
        ci = test.confidence_interval(0.95)
        assert t.loc[method, f"{SETTING}: Δ Rouge-L vs ferret (pts, paired t, 95%)"] == (
            f"{100 * d.mean():+.1f} [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}]")
        assert t.loc[method, f"{SETTING}: p < 0.05"] == ("*" if test.pvalue < 0.05 else "")
    # The fixture is built so that both outcomes occur: the marks can fail either way.
    assert t.loc["fedavg", f"{SETTING}: p < 0.05"] == "*" and t.loc["fedzo", f"{SETTING}: p < 0.05"] == ""


def test_written_main_table_states_the_interval_kind_seeds_and_examples(tmp_path):
    df, ex = _fixture(tmp_path)
    tables.write_tables(df, tmp_path / "tables", examples=ex)
    md = (tmp_path / "tables" / "main.md").read_text()
    assert "Student-t" in md and "paired t-test" in md
    assert "2–3 seed(s) per configuration" in md and f"{N_EXAMPLES} eval examples" in md


def test_without_per_example_scores_the_table_says_so(tmp_path):
    df, _ = _fixture(tmp_path)
    tables.write_tables(df, tmp_path / "tables")
    md = (tmp_path / "tables" / "main.md").read_text()
    assert "no paired differences" in md and "Δ Rouge-L" not in md


@pytest.mark.parametrize("drop", [3])
def test_paired_difference_needs_the_same_examples(tmp_path, drop):
    df, ex = _fixture(tmp_path)
    ex = ex[~((ex["method"] == "fedzo") & (ex["example"] == drop))]
    t = tables.main_table(df, examples=ex)
    assert t.loc["fedzo", f"{SETTING}: Δ Rouge-L vs ferret (pts, paired t, 95%)"] == "n/a (other examples)"
