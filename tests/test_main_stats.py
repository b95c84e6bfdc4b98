"""Main-table statistics on a fixture written here: the range for two seeds, a bootstrap over
examples and seeds for three, and paired per-example differences from Ferret, checked against the
fixture's own arrays and scipy's paired t interval (not ferret/report/stats.py)."""

from __future__ import annotations

import re

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


DELTA = f"{SETTING}: Δ Rouge-L vs ferret (pts, paired bootstrap, 95%)"
MARK = f"{SETTING}: differs (95%)"


def _cell_numbers(cell: str) -> list[float]:
    return [float(v) for v in re.findall(r"[-+]?\d+\.\d+", cell)]


def test_main_table_intervals_follow_the_seed_count(tmp_path):
    df, ex = _fixture(tmp_path)
    t = tables.main_table(df, examples=ex)
    final = ex[ex["round"] == 2]
    for method, seeds in SEEDS.items():
        finals = df[(df["method"] == method) & (df["round"] == 2)]
        for column, scale, digits, name in (("rouge_l", 100.0, 1, "Rouge-L (%) 95% interval"),
                                            ("eval_loss", 1.0, 3, "eval loss 95% interval")):
            cell = t.loc[method, f"{SETTING}: {name}"]
            x = finals[column].to_numpy() * scale
            if len(seeds) < 3:  # two seeds: their range, said so, not a 12.7 × t interval
                assert cell == f"range [{x.min():.{digits}f}, {x.max():.{digits}f}] (n = 2)"
                continue
            low, high = _cell_numbers(cell)[:2]
            assert cell.endswith("(bootstrap, n = 3)")
            per_run = final[final["method"] == method].pivot(index="run_id", columns="example", values=column)
            assert per_run.to_numpy().min() * scale <= low < x.mean() < high <= per_run.to_numpy().max() * scale
            # over examples and seeds: at least as wide as the examples' own standard error would give
            se = per_run.mean(axis=0).std(ddof=1) / np.sqrt(N_EXAMPLES) * scale
            assert high - low > 2 * 1.96 * se * 0.8


def test_paired_differences_agree_with_scipy_and_mark_both_outcomes(tmp_path):
    df, ex = _fixture(tmp_path)
    t = tables.main_table(df, examples=ex)
    final = ex[ex["round"] == 2]
    per_example = {m: final[final["method"] == m].groupby("example")["rouge_l"].mean().sort_index() for m in SEEDS}
    assert t.loc["ferret", DELTA] == "ref"
    for method in ("fedavg", "fedzo"):
        d = (per_example[method] - per_example["ferret"]).to_numpy()
        diff, low, high = _cell_numbers(t.loc[method, DELTA])
        assert diff == pytest.approx(100 * d.mean(), abs=0.051)
        if method == "fedzo":  # 2 seeds: seeds averaged per example, a bootstrap over the examples ~ paired t
            ci = st.ttest_rel(per_example[method], per_example["ferret"]).confidence_interval(0.95)
            assert (low, high) == (pytest.approx(100 * ci.low, abs=0.3), pytest.approx(100 * ci.high, abs=0.3))
            assert t.loc[method, DELTA].endswith("(examples)")
        else:
            assert t.loc[method, DELTA].endswith("(examples and seeds)")
        assert t.loc[method, MARK] == ("*" if low > 0 or high < 0 else "")
    # The fixture is built so that both outcomes occur: the marks can fail either way.
    assert t.loc["fedavg", MARK] == "*" and t.loc["fedzo", MARK] == ""


def test_written_main_table_states_the_interval_kind_seeds_and_examples(tmp_path):
    df, ex = _fixture(tmp_path)
    tables.write_tables(df, tmp_path / "tables", examples=ex)
    md = (tmp_path / "tables" / "main.md").read_text()
    assert "bootstrap" in md and "2000 resamples" in md and "range of the seeds" in md
    assert "2–3 seed(s) per configuration" in md and f"{N_EXAMPLES} eval examples" in md
    for name in ("cost", "claims", "budget", "paper_rouge"):  # every table says what it rests on
        assert "2–3 seed(s) per configuration" in (tmp_path / "tables" / f"{name}.md").read_text()


def test_official_metric_is_shown_beside_rouge_score(tmp_path):
    df, ex = _fixture(tmp_path)
    df["rouge_l_official"], ex["rouge_l_official"] = df["rouge_l"] * 0.9, ex["rouge_l"] * 0.9
    t = tables.main_table(df, examples=ex)
    official = df[(df["method"] == "fedavg") & (df["round"] == 2)]["rouge_l_official"] * 100
    assert t.loc["fedavg", f"{SETTING}: Rouge-L official (%)"] == (
        f"{official.mean():.1f} ± {official.std():.1f} (n = 3)")
    assert t.loc["fedzo", f"{SETTING}: Rouge-L official (%) 95% interval"].startswith("range [")
    tables.write_tables(df, tmp_path / "tables", examples=ex)
    assert "`rouge` 1.0.1" in (tmp_path / "tables" / "main.md").read_text()


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
    assert t.loc["fedzo", DELTA] == "n/a (other examples)"
