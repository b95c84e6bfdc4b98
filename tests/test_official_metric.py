"""The official code's Rouge-L (`rouge` 1.0.1, ferret/metrics.py) beside rouge-score's."""

from __future__ import annotations

from importlib import metadata

import pytest
from rouge import Rouge

from ferret.metrics import PER_EXAMPLE, rouge_l_official_score, rouge_l_official_scores, rouge_l_scores

# (reference, prediction, Rouge-L F of rouge 1.0.1, of rouge-score), to two digits
CASES = [
    ("Yes", "yes", 0.0, 1.0),
    ("positive", "Positive.", 0.0, 1.0),
    ("[1, 2, 3]", "1, 2, 3", 0.33, 1.0),
    # rouge-score: 5 of 8 words in order
    ("The cat sat on mats. Dogs bark loudly.", "Dogs bark loudly. The cat sat on mats.", 1.0, 0.625),
]


def _package(prediction: str, reference: str) -> float:
    """rouge 1.0.1 called directly, as the official evaluations.py calls it."""
    return Rouge().get_scores([prediction], [reference])[0]["rouge-l"]["f"]


def test_the_pinned_package_is_the_official_version():
    assert metadata.version("rouge") == "1.0.1"


@pytest.mark.parametrize("reference, prediction, official, rouge_score", CASES)
def test_official_metric_is_rouge_1_0_1s_own_output(reference, prediction, official, rouge_score):
    ours = rouge_l_official_score(prediction, reference)
    assert ours == _package(prediction, reference)  # the package's own number, every digit
    assert ours == pytest.approx(official, abs=0.005)
    assert rouge_l_scores([prediction], [reference])[0] == pytest.approx(rouge_score, abs=0.005)


@pytest.mark.parametrize("prediction", ["", "."])
def test_predictions_the_package_rejects_score_zero_as_in_the_official_code(prediction):
    if prediction:  # the official code catches this ValueError; an empty one it never passes on
        with pytest.raises(ValueError):
            _package(prediction, "positive")
    assert rouge_l_official_score(prediction, "positive") == 0.0


@pytest.mark.parametrize("prediction", ["!", "...", " . ", "?!,", "  "])
@pytest.mark.parametrize("reference", ["A dog barked.", "!"])
def test_punctuation_only_predictions_score_as_the_package_scores_them(prediction, reference):
    try:
        expected = _package(prediction, reference)
    except ValueError:  # e.g. "..." holds no sentence at all: the official code scores 0
        expected = 0.0
    assert rouge_l_official_score(prediction, reference) == expected


def test_every_run_computes_both_metrics_per_example():
    assert set(PER_EXAMPLE) == {"rouge_l", "rouge_l_official"}
    preds, refs = [c[1] for c in CASES], [c[0] for c in CASES]
    assert rouge_l_official_scores(preds, refs) == [_package(p, r) for p, r in zip(preds, refs)]
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        rouge_l_official_scores(["a", "b"], ["a"])


def test_rescore_recomputes_the_data_sets_own_metric_and_both_rouge_l_from_texts(tmp_path):
    import pandas as pd

    from ferret.data.gsm8k import accuracy
    from ferret.rescore import check, compare, rescore

    preds, refs = ["so #### 42", "Yes.", ""], ["#### 42", "yes", "#### 7"]
    rows = pd.DataFrame({"run_id": "r", "method": "m", "dataset": "gsm8k", "round": 3, "example": [0, 1, 2],
                         "rouge_l": ["0.5", "0.25", "0.0"], "prediction": preds, "reference": refs})
    rows.to_csv(tmp_path / "all_examples.csv", index=False)
    result = rescore(tmp_path / "all_examples.csv")
    (means,) = result.means.to_dict("records")
    assert means["accuracy"] == accuracy(preds, refs) == 1 / 3
    assert means["rouge_l_official"] == sum(_package(p, r) if p else 0.0 for p, r in zip(preds, refs)) / 3
    assert means["rouge_l"] == sum(rouge_l_scores(preds, refs)) / 3
    # the stored rouge_l cells were made up: the check names each one it does not reproduce
    assert [line.split(":")[0] for line in check(result)] == ["r round 3 example 0", "r round 3 example 1"]
    table = compare(result).iloc[0]
    assert table["Rouge-L official (%)"] == pytest.approx(100 * means["rouge_l_official"])
    # "Yes." vs "yes": 1.0 by rouge-score, 0.0 officially; "so #### 42" vs "#### 42": rouge-score drops
    # "####" (2/3), the official metric keeps it as a word (0.8); both empty predictions score 0
    assert table["examples differing"] == "2 of 3"
    assert (table["official lower"], table["official higher"]) == (1, 1)
