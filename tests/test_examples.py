"""Per-example scores (examples.csv) and the shared untuned evaluation (ferret eval-untuned)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import tiny_overrides, with_overrides

from ferret import engine
from ferret.config import ConfigError, load_config
from ferret.csv_sink import EXAMPLE_COLUMNS
from ferret.report.collect import collect_examples

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
    assert main(["eval-untuned", "--out", str(tmp_path / "bad"), *with_overrides(overrides, "eval_per_task=0")]) == 2
    assert "eval_per_task" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_where_round_0_came_from_does_not_make_a_finished_run_another_config(shared):
    from ferret.outdir import AlreadyDone

    with pytest.raises(AlreadyDone):  # s0 ran with untuned=...; the same run without it is the same run
        engine.run(_cfg(run_id="s0", seed=0), shared / "s0")


def test_examples_csv_keeps_every_generation_with_its_reference_and_stable_prompt_id(shared):
    from ferret.data.registry import load_federated_data
    from ferret.data.types import example_id
    from ferret.metrics import rouge_l_official_score

    eval_set = load_federated_data(_cfg()).eval
    metrics = pd.read_csv(shared / "s0" / "metrics.csv").set_index("round")
    runs = {n: pd.read_csv(shared / n / "examples.csv", dtype=str, keep_default_na=False) for n in ("s0", "s1")}
    for r, group in runs["s0"].groupby("round"):
        assert group["prompt_id"].tolist() == [example_id(ex) for ex in eval_set]  # stable, one per instance
        assert group["prompt_id"].nunique() == len(eval_set)
        assert group["reference"].tolist() == [ex.output for ex in eval_set]
        official = [rouge_l_official_score(p, ref) for p, ref in zip(group["prediction"], group["reference"])]
        assert [float(v) for v in group["rouge_l_official"]] == official
        assert sum(official) / len(official) == metrics.loc[int(r), "rouge_l_official"]
    assert runs["s0"]["prompt_id"].tolist() == runs["s1"]["prompt_id"].tolist()
    assert (runs["s0"]["prediction"] != "").any()  # the decoded generations (the untuned tiny model's are empty)


def test_rescore_reproduces_the_runs_numbers_from_the_files_alone(shared, tmp_path, capsys):
    from ferret.cli import main
    from ferret.report.collect import write_all_examples

    for name in ("s0", "prompt"):  # round 0 shared from the untuned folder / evaluated in the run
        assert main(["rescore", str(shared / name), "--check"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    metrics = pd.read_csv(shared / "prompt" / "metrics.csv")
    assert repr(float(metrics["rouge_l_official"].iloc[-1])) in printed  # the run's number, every digit

    all_examples = tmp_path / "all_examples.csv"
    write_all_examples([shared / n for n in ("s0", "s1", "prompt")], all_examples)
    assert main(["rescore", str(all_examples), "--check", "--out", str(tmp_path / "re.csv")]) == 0
    kept = pd.read_csv(all_examples, dtype=str, keep_default_na=False)
    again = pd.read_csv(tmp_path / "re.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(kept, again)  # recomputed cell for cell

    assert main(["rescore", str(all_examples), "--compare"]) == 0
    table = capsys.readouterr().out
    assert "Rouge-L official (%)" in table and "fedprompt" in table and "ferret" in table


def test_rescore_check_fails_when_a_kept_text_no_longer_gives_its_score(shared, tmp_path, capsys):
    import shutil

    from ferret.cli import main

    run = tmp_path / "s0"
    shutil.copytree(shared / "s0", run)
    rows = pd.read_csv(run / "examples.csv", dtype=str, keep_default_na=False)
    last = rows.index[rows["rouge_l"] != ""][-1]
    rows.loc[last, "prediction"] = rows.loc[last, "reference"] + " and then some words the model never wrote"
    rows.to_csv(run / "examples.csv", index=False)
    assert main(["rescore", str(run), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"example {rows.loc[last, 'example']}: rouge_l stored" in err and "metrics.csv rouge_l_official" in err
    assert main(["rescore", str(run), "--metric", "bleu"]) == 2
    assert "--metric bleu: unknown" in capsys.readouterr().err


def test_an_untuned_folder_written_with_other_columns_is_neither_reused_nor_keyed_alike(shared, tmp_path, monkeypatch):
    import shutil

    from ferret import untuned

    old = tmp_path / "old"
    shutil.copytree(shared / "untuned", old)
    record = json.loads((old / "untuned.json").read_text())
    record["identity"]["columns"] = ["run_id", "method", "round", "example", "task", "eval_loss", "rouge_l"]
    (old / "untuned.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="per-example columns"):
        engine.run(_cfg(untuned=str(old)), tmp_path / "bad")
    key = untuned.folder_key(_cfg().to_dict())
    monkeypatch.setattr(untuned, "EXAMPLE_COLUMNS", record["identity"]["columns"])
    assert untuned.folder_key(_cfg().to_dict()) != key  # the workflow makes a new folder, never reuses the old
