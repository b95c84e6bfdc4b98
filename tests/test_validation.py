"""Bad input, table-driven: each case exits non-zero with one line naming the bad value, and an
existing results folder (a run interrupted after a checkpoint) stays byte-identical.

tests/test_cli.py holds the first cases (BAD, run against a fresh folder there); they are run here
again against the existing folder, next to the cases this file adds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_overrides, with_overrides
from test_cli import BAD as CLI_BAD

from ferret import checkpoint
from ferret.cli import main
from ferret.config import load_config
from ferret.data import registry as data_registry
from ferret.engine import run

BASE = tiny_overrides(method="fedavg", rounds=2, num_tasks=2, eval_per_task=1, threads=1)


def _empty_client(cfg):
    """The synthetic set with client 1's data removed (a partition that left a client empty)."""
    data = data_registry.DATASETS["synthetic"](cfg)
    data.clients[1] = []
    return data


# (overrides or a config file's text, the text the one-line message must name)
NEW_BAD = [
    ({"file": "method: ferret\nK: [1, 2\n"}, "bad.yaml line 3"),                 # malformed YAML
    ({"file": "- method\n- ferret\n"}, "must be a mapping"),                    # not a mapping
    ({"file": "method: ferret\nlocal_step: 3\n"}, "did you mean 'local_steps'"),  # unknown key, with a hint
    (["equal_weight=maybe"], "equal_weight='maybe'"),                           # wrong type: bool
    (["rounds=2.5"], "rounds=2.5"),                                             # wrong type: int
    (["method_options=5"], "method_options=5"),                                 # wrong type: mapping
    (["lr=-0.1"], "lr=-0.1"),                                                   # out of range
    (["lr=inf"], "lr=inf"),                                                     # not finite
    (["momentum=1.0"], "momentum=1.0"),
    (["n_accum=3"], "n_accum=3"),                                               # must divide local_steps
    (["checkpoint_every=-1"], "checkpoint_every=-1"),
    (["num_tasks=99"], "num_tasks=99"),
    (["dtype=float8"], "float8"),
    (["device=tpu"], "device='tpu'"),
    (["wandb_mode=sometimes"], "sometimes"),
    (["run_id=a/b"], "a/b"),
    (["model=tinyy"], "tinyy"),                                                 # unknown model alias
    (["method_options.ferret.basiss=rademacher"], "basiss"),                    # unknown method option
    (["method=ferret", "K=5000000"], "K=5000000"),                              # K > the tiny model's parameters
    (["method=fedprompt", "K=2000"], "K=2000"),                                 # K > the prompt's 20 x 64
    (["max_length=16"], "max_length=16"),                                       # prompt longer than that
    (["dataset=empty-client"], "client 1"),                                     # a client with no data
]
CASES = [(list(o), named) for o, named in CLI_BAD] + NEW_BAD


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A results folder as a crash leaves it: run.json, metrics.csv, a checkpoint, a temp file."""
    out = tmp_path_factory.mktemp("existing")
    real = checkpoint.save

    def save_then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint, "save", save_then_crash)
        with pytest.raises(KeyboardInterrupt):
            run(load_config(None, BASE), out)
    (out / ".metrics.csv.x1y2.tmp").write_text("run_id,me")
    assert (out / "checkpoints" / "round-000001").is_dir()
    return out


def test_at_least_fifteen_distinct_bad_inputs():
    assert len({named for _, named in CASES}) == len(CASES) >= 15


@pytest.mark.parametrize("bad,named", CASES, ids=[named for _, named in CASES])
def test_bad_input_exits_nonzero_names_the_value_and_leaves_results_untouched(
        tmp_path, capsys, monkeypatch, existing, bad, named):
    monkeypatch.setitem(data_registry.DATASETS, "empty-client", _empty_client)
    before = _snapshot(existing)
    args = ["run", "--out", str(existing)]
    if isinstance(bad, dict):
        path = tmp_path / "bad.yaml"
        path.write_text(bad["file"])
        args += ["--config", str(path), *BASE]
    else:
        args += with_overrides(BASE, *bad)
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and named in err, err
    assert _snapshot(existing) == before


def test_a_tokenizer_without_pad_token_is_handled(tmp_path):
    """A local model whose tokenizer defines no pad token runs (pad = eos), not an error."""
    from transformers import AutoTokenizer

    from ferret.models import load_model_and_tokenizer

    model, tokenizer, _ = load_model_and_tokenizer("tiny", seed=0)
    tokenizer.pad_token = None
    folder = tmp_path / "no-pad-model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).pad_token is None  # the fixture really lacks one

    record = run(load_config(None, with_overrides(BASE, f"model={folder}", "rounds=1")), tmp_path / "run")
    assert record["status"] == "ok"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model"]["source"] == f"path:{folder}"
