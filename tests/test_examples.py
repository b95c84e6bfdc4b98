"""Per-example scores (examples.csv) and the shared untuned evaluation (ferret eval-untuned)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ferret import engine
from ferret.config import ConfigError, load_config
from ferret.csv_sink import EXAMPLE_COLUMNS
from ferret.report.collect import collect_examples

from conftest import tiny_overrides

SMALL = {"rounds": 2, "num_tasks": 2, "eval_per_task": 2, "threads": 1, "wandb_mode": "disabled",
         "checkpoint_every": 0}


def _cfg(**extra: object):
    return load_config(None, tiny_overrides(**{**SMALL, **extra}))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One untuned evaluation, two Ferret seeds, a LoRA run and a prompt-tuning run reading it."""
    root = tmp_path_factory.mktemp("shared")
    engine.evaluate_untuned(_cfg(), root / "untuned")
    for name, extra in {"s0": {"seed": 0}, "s1": {"seed": 1}, "lora": {"method": "fedit"},
                        "prompt": {"method": "fedprompt"}}.items():
        engine.run(_cfg(untuned=str(root / "untuned"), run_id=name, **extra), root / name)
    return root


def test_examples_csv_holds_each_evaluated_rounds_scores_and_their_mean_is_the_metric(shared):
    metrics = pd.read_csv(shared / "s0" / "metrics.csv").set_index("round")
    examples = pd.read_csv(shared / "s0" / "examples.csv")
    assert list(examples.columns) == EXAMPLE_COLUMNS
    assert sorted(examples["round"].unique()) == [0, 2]  # eval_every=2: nothing at round 1
    for r, group in examples.groupby("round"):
        assert group["example"].tolist() == list(range(4))  # num_tasks x eval_per_task, in eval-set order
        assert group["eval_loss"].mean() == pytest.approx(metrics.loc[r, "eval_loss"], rel=1e-12)
        assert group["rouge_l"].mean() == pytest.approx(metrics.loc[r, "rouge_l"], abs=1e-12)


def test_seeds_share_the_untuned_round_0_to_every_digit(shared):
    untuned = json.loads((shared / "untuned" / "untuned.json").read_text())["row"]
    rows = {n: pd.read_csv(shared / n / "metrics.csv").set_index("round") for n in ("s0", "s1")}
    for column in ("eval_loss", "rouge_l"):
        assert rows["s0"].loc[0, column] == rows["s1"].loc[0, column] == untuned[column]
    assert rows["s0"].loc[2, "train_loss"] != rows["s1"].loc[2, "train_loss"]  # the runs themselves differ
    for n in ("s0", "s1", "lora"):  # LoRA starts with B = 0: the base model exactly
        assert json.loads((shared / n / "run.json").read_text())["final"]["round0"].startswith("shared")


def test_prompt_tuning_differs_from_the_base_model_at_init_so_it_evaluates_round_0_itself(shared):
    record = json.loads((shared / "prompt" / "run.json").read_text())
    assert record["final"]["round0"].startswith("own")
    untuned = json.loads((shared / "untuned" / "untuned.json").read_text())["row"]
    assert pd.read_csv(shared / "prompt" / "metrics.csv").loc[0, "eval_loss"] != untuned["eval_loss"]


def test_an_untuned_folder_of_another_eval_set_is_refused_before_anything_is_written(shared, tmp_path):
    with pytest.raises(ConfigError, match="eval_per_task"):
        engine.run(_cfg(untuned=str(shared / "untuned"), eval_per_task=3), tmp_path / "bad")
    assert not (tmp_path / "bad" / "metrics.csv").exists()
    with pytest.raises(ConfigError, match="not a finished"):
        engine.run(_cfg(untuned=str(tmp_path / "nowhere")), tmp_path / "bad2")


def test_collect_gathers_examples_with_grid_values(shared):
    df = collect_examples([shared / n for n in ("s0", "s1", "prompt")])
    assert set(df["run_id"]) == {"s0", "s1", "prompt"}
    assert {"seed", "K", "num_clients", "dataset", "model"} <= set(df.columns)
    assert len(df) == 3 * 2 * 4  # 3 runs x rounds {0, 2} x 4 examples


def test_eval_untuned_command_writes_the_folder_and_rejects_bad_input(tmp_path, capsys):
    from ferret.cli import main

    overrides = tiny_overrides(**SMALL)
    assert main(["eval-untuned", "--out", str(tmp_path / "u"), *overrides]) == 0
    record = json.loads((tmp_path / "u" / "untuned.json").read_text())
    assert record["identity"]["eval_examples"] == 4 and "probe_loss" in record
    assert main(["eval-untuned", "--out", str(tmp_path / "bad"), *overrides, "eval_per_task=0"]) == 2
    assert "eval_per_task" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_where_round_0_came_from_does_not_make_a_finished_run_another_config(shared):
    from ferret.outdir import AlreadyDone

    with pytest.raises(AlreadyDone):  # s0 ran with untuned=...; the same run without it is the same run
        engine.run(_cfg(run_id="s0", seed=0), shared / "s0")
