"""results/reference/ holds the paper's numbers: each one is in its paper_numbers.md, the files
agree with each other, and every key joins this suite's methods, model aliases and data sets.
Where the maintainers' reference copy of the paper's numbers is present (../shared/reference), the
project's statement must print exactly its numbers."""
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED, shared_path

from ferret.algorithms.registry import METHODS
from ferret.data.registry import DATASETS
from ferret.models import ALIASES

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"
NUMBERS = REFERENCE / "paper_numbers.md"
SHARED_NUMBERS = SHARED / "reference" / "ferret_paper_numbers.md"
ROUGE = ["table2_rouge_l.csv", "table3_rouge_l.csv", "table9_rouge_l.csv"]
KEYED = ROUGE + ["cost_per_round.csv", "table6_peak_memory.csv", "figure1.csv"]
NON_NUMERIC = {"table", "dataset", "model", "method", "source", "note", "claim", "baseline", "quantity",
               "unit", "setting", "definition", "inconsistency"}


def _numbers(text: str) -> set[float]:
    return {float(t.replace("10^", "1e")) for t in re.findall(r"10\^\d+|\d+(?:\.\d+)?(?:e\d+)?", text)}


@pytest.fixture(scope="module")
def paper_numbers() -> set[float]:
    return _numbers(NUMBERS.read_text())


def _tables(text: str) -> str:
    """The text from the first section on (the header says where the numbers were read)."""
    return text[text.index("\n## "):]


@pytest.mark.shared_data
def test_the_statement_prints_the_reference_copys_numbers(paper_numbers):
    shared = shared_path(SHARED_NUMBERS, "the reference copy of the paper's numbers")
    assert _tables(NUMBERS.read_text()) == _tables(shared.read_text())


def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / name, dtype=str, keep_default_na=False)


@pytest.mark.parametrize("name", KEYED + ["claims.csv"])
def test_every_number_is_one_the_paper_printed(name, paper_numbers):
    df = _read(name)
    for column in set(df.columns) - NON_NUMERIC:
        for value in df[column]:
            if value:
                assert float(value.replace("10^", "1e")) in paper_numbers, f"{name}: {column}={value}"


def test_table2_has_mean_and_std_in_every_cell():
    df = pd.read_csv(REFERENCE / "table2_rouge_l.csv")
    assert len(df) == 4 * 8 and df[["rouge_l_mean", "rouge_l_std"]].notna().all().all()
    assert (df["n_seeds"] == 4).all()


@pytest.mark.parametrize("name", KEYED)
def test_every_key_is_one_the_suite_knows(name):
    df = _read(name)
    assert set(df["method"]) <= set(METHODS), name
    assert set(df["model"]) <= set(ALIASES), name
    assert set(df["dataset"]) <= set(DATASETS), name
    assert df["source"].str.contains(r"(?:Table|Figure) \d").all(), name


def test_the_files_agree_with_each_other():
    rouge = pd.concat([pd.read_csv(REFERENCE / f) for f in ROUGE]).set_index(["dataset", "model", "method"])
    fig1 = pd.read_csv(REFERENCE / "figure1.csv").set_index(["dataset", "model", "method"])
    for key, row in fig1.iterrows():
        assert row["rouge_l"] == rouge.loc[key, "rouge_l_mean"], key  # Fig. 1 bars = Table 2 cells
    cost = pd.read_csv(REFERENCE / "cost_per_round.csv", dtype={"comm_params": str})
    t4 = cost[cost["table"] == "Table 4"].set_index("method")
    for key, row in fig1.iterrows():
        assert row["seconds_per_round"] == pytest.approx(t4.loc[key[2], "overall_s"])
    assert (cost["overall_s"] - cost["local_s"] - cost["aggregation_s"]).abs().max() < 0.051
    claims = pd.read_csv(REFERENCE / "claims.csv", dtype=str)
    column = {"computation": "overall_s", "local": "local_s", "aggregation": "aggregation_s",
              "communication": "comm_params"}
    for _, row in claims[claims["claim"].isin(list(column))].iterrows():  # every baseline's Table 4 seconds
        col = column[row["claim"]]
        assert float(row["paper_baseline_abs"]) == float(t4.loc[row["baseline"], col]), tuple(row)
        assert float(row["paper_ferret_abs"]) == float(t4.loc["ferret", col]), tuple(row)
    for _, row in claims[claims["claim"] == "score"].iterrows():  # the scores are Table 2's NI / LLaMA-3B cells
        for method, col in ((row["baseline"], "paper_baseline_abs"), ("ferret", "paper_ferret_abs")):
            assert float(row[col]) == rouge.loc[("natural-instructions", "llama-3b", method), "rouge_l_mean"]
    rounds = claims.set_index(["claim", "baseline"]).loc[("rounds", "fedkseed")]
    assert [rounds[c] for c in ("paper_baseline_abs", "paper_ferret_abs")] == [
        str(fig1.loc[("natural-instructions", "llama-3b", m), "rounds"]) for m in ("fedkseed", "ferret")]
    t9 = pd.read_csv(REFERENCE / "table9_rouge_l.csv")
    flagged = t9[t9["note"].fillna("").str.contains("repeats FedZO")]
    assert len(flagged) == 3 and set(flagged["method"]) == {"fedkseed"}
