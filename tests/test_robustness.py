"""Hostile but realistic input and faults: foreign files in --out, tampered results, failures and
signals while the run prepares, YAML alias bombs and huge values, redaction coincidences, unbounded
settings, malformed report inputs. Each case asserts that the finished run already on disk is
unchanged byte for byte (or, where the case is about that folder, what exactly changed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from conftest import ROOT, tiny_overrides, with_overrides
from fault_injection import signal_when_paused

from ferret.atomic import write_json
from ferret.cli import main
from ferret.config import load_config
from ferret.engine import run
from ferret.host import Host
from ferret.redaction import redact, secret_values
from ferret.report.collect import collect

OVERRIDES = tiny_overrides(method="fedavg", rounds=2, num_tasks=2, eval_per_task=1, threads=1)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", "--out", str(out), *OVERRIDES]) == 0
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err[:3000]
    return err


# -- --out takes only what is ferret's --------------------------------------------------------------
@pytest.mark.parametrize("files", [
    {"metrics.csv": "step,loss\n1,0.5\n", "run.json": '{"tool": "other"}'},  # another tool's results
    {"notes.txt": "my notes"},                                               # anything not ferret's
    {"metrics.csv": "step,loss\n1,0.5\n"},                                   # CSV without a record
])
def test_out_holding_files_that_are_not_ferrets_is_refused(tmp_path, capsys, finished, files):
    before = _snapshot(finished)
    out = tmp_path / "theirs"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    theirs = _snapshot(out)
    assert main(["run", "--out", str(out), *OVERRIDES]) == 2
    assert "not a ferret run folder" in _one_line_error(capsys)
    assert _snapshot(out) == theirs and sorted(p.name for p in out.iterdir()) == sorted(files)
    assert _snapshot(finished) == before


def test_an_empty_out_path_is_bad_input(tmp_path, capsys, monkeypatch, finished):
    before = _snapshot(finished)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--out", "", *OVERRIDES]) == 2
    assert "--out ''" in _one_line_error(capsys)
    assert main(["eval-untuned", "--out", " ", *OVERRIDES]) == 2
    assert list(tmp_path.iterdir()) == []
    assert _snapshot(finished) == before


# -- a tampered finished run is reported, not trusted --------------------------------------------------
def test_a_tampered_finished_run_is_neither_done_nor_collected(tmp_path, capsys, finished):
    before = _snapshot(finished)
    record = json.loads((finished / "run.json").read_text())
    assert set(record["checksums"]) == {"metrics.csv", "examples.csv"}
    assert collect([finished])["status"].eq("ok").all()
    out = tmp_path / "run"
    out.mkdir()
    for name in ("run.json", "metrics.csv", "examples.csv"):
        (out / name).write_bytes((finished / name).read_bytes())
    (out / "metrics.csv").write_text((out / "metrics.csv").read_text().replace(",1,", ",7,", 1))
    edited = _snapshot(out)
    assert main(["run", "--out", str(out), *OVERRIDES]) == 2  # not "already done"
    err = _one_line_error(capsys)
    assert "metrics.csv no longer match the checksums" in err and "--force" in err
    assert _snapshot(out) == edited
    with pytest.raises(ValueError, match="no valid runs"):
        collect([out])
    assert "TAMPERED: metrics.csv" in capsys.readouterr().err
    assert main(["collect", str(finished), str(out), "--out", str(tmp_path / "all_runs.csv")]) == 0
    assert "skipping" in capsys.readouterr().err
    import pandas as pd

    assert set(pd.read_csv(tmp_path / "all_runs.csv")["run_id"]) == {record["run_id"]}  # only the intact one
    assert _snapshot(finished) == before


# -- every failure ends with run.json and the traceback it names ---------------------------------------
def test_a_failure_while_preparing_is_recorded_and_a_later_ok_run_drops_its_traceback(tmp_path, capsys, finished):
    before = _snapshot(finished)
    out = tmp_path / "run"
    bad = tiny_overrides(method="fedit", rounds=2, num_tasks=2, eval_per_task=1, threads=1)
    assert main(["run", "--out", str(out), *bad, "method_options.fedit.target_modules=no_such_module"]) == 1
    err = _one_line_error(capsys)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and "no_such_module" in record["error"] and "\n" not in record["error"]
    assert Path(record["traceback"]).is_file() and f"traceback in {out}/traceback.log" in err
    assert "Traceback" in (out / "traceback.log").read_text()
    assert (out / "metrics.csv").read_text().startswith("run_id,")  # the header: the outputs exist
    # The same folder, the cause fixed: an ok run, and no stale traceback beside it.
    assert main(["run", "--out", str(out), *bad]) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "ok"
    assert not (out / "traceback.log").exists() and not (out / ".staging").exists()
    assert _snapshot(finished) == before


def test_sigterm_while_preparing_ends_interrupted(tmp_path, finished):
    before = _snapshot(finished)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ferret", "run", "--out", str(out), *OVERRIDES]
    status, rest = signal_when_paused(cmd, "prepare", signal.SIGTERM)
    assert status == 128 + signal.SIGTERM
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted" and record["error"] == "stopped by SIGTERM"
    assert Path(record["traceback"]).is_file() and "traceback in" in rest
    assert _snapshot(finished) == before


def test_bad_input_found_after_the_folder_is_taken_leaves_nothing(tmp_path, capsys, finished):
    before = _snapshot(finished)
    out = tmp_path / "new"
    assert main(["run", "--out", str(out), *with_overrides(OVERRIDES, "K=5000000")]) == 2  # K > the model's parameters
    assert "K=5000000" in _one_line_error(capsys)
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main(["run", "--out", str(kept), *with_overrides(OVERRIDES, "K=5000000")]) == 2
    assert list(kept.iterdir()) == []  # no .staging, no .lock
    assert _snapshot(finished) == before


def test_run_json_records_the_wandb_mode_in_use(tmp_path, monkeypatch, finished):
    """W&B asked for (online) but unable to start: the run goes on, and says W&B was off."""
    before = _snapshot(finished)

    def init(**kwargs):
        raise RuntimeError("no network")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init, Settings=lambda **kw: None))
    record = run(load_config(None, with_overrides(OVERRIDES, "wandb_mode=online")), tmp_path / "run")
    assert record["status"] == "ok" and record["wandb_mode"] == "disabled"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["wandb_mode"] == "disabled"
    assert _snapshot(finished) == before


# -- bounded errors, YAML aliases, decoding, ranges, duplicates, device, data_path ------------------------
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


@pytest.mark.parametrize("case,named", [
    ({"file": "method_options:\n  ferret:\n    " + BOMB.replace("\n", "\n    ")}, "YAML alias"),
    ({"file": "rounds: " + "9" * 10_000 + "\n"}, "unreadable value"),
    ({"file": b"method: ferret\nexperiment: caf\xe9\n"}, "not UTF-8 text (byte 30, line 2"),
    (["method_options.ferret.basis=[&a [1, 1], *a]"], "YAML alias"),
    (["rounds=" + "x" * 100_000], "rounds='xxx"),
    (["seed=1", "seed=2"], "'seed' is given twice"),
    (["device=cudaXYZ"], "device='cudaXYZ'"),
    (["device=cuda:999"], "device='cuda:999': this machine has"),
    (["threads=10000"], "threads=10000"),
    (["max_new_tokens=1000000000"], "max_new_tokens=1000000000"),
    (["num_clients=1000000000"], "num_clients=1000000000"),
    (["rounds=100000000000"], "rounds=100000000000"),
    (["data_path=/some/data.json"], "data_path='/some/data.json'"),
])
def test_bad_input_gives_one_bounded_line_and_changes_nothing(tmp_path, capsys, finished, case, named):
    before = _snapshot(finished)
    args = ["run", "--out", str(finished)]
    if isinstance(case, dict):
        path = tmp_path / "bad.yaml"
        text = case["file"]
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        args += ["--config", str(path), *[o for o in OVERRIDES if not o.startswith(("rounds=", "method="))]]
    else:
        args += with_overrides(OVERRIDES, *case)
    t0 = time.perf_counter()
    assert main(args) == 2
    err = _one_line_error(capsys)
    assert named in err and len(err) < 1200, err[:2000]
    assert time.perf_counter() - t0 < 30
    assert _snapshot(finished) == before


def test_a_grid_file_with_yaml_aliases_is_refused_by_the_workflow(tmp_path):
    grid = (ROOT / "workflow" / "configs" / "smoke.yaml").read_text()
    (tmp_path / "bomb.yaml").write_text(grid + "\nextra_notes:\n  " + BOMB.replace("\n", "\n  "))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(tmp_path / "bomb.yaml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "YAML alias" in text and len(text) < 20_000, text[-3000:]


# -- redaction: logs and outputs, never the recorded config; secrets, not coincidences ------------------
def test_redaction_keeps_the_recorded_config_and_matches_whole_secrets(tmp_path, finished):
    before = _snapshot(finished)
    secret = "hunter2-FAKE-password"
    env = {"MY_SERVICE_PASSWORD": secret, "SHORT_KEY": "1234567", "PATH": "/usr/bin"}
    secrets = secret_values(env)
    assert secrets == [secret]  # shorter than 8 characters: never a secret
    assert redact("xhunter2-FAKE-passwordy and (hunter2-FAKE-password)", secrets) == \
        "xhunter2-FAKE-passwordy and (***)"
    assert redact("k=1234567", ["1234567"]) == "k=1234567"
    record = run(load_config(None, [*OVERRIDES, f"experiment={secret}"]), tmp_path / "run",
                 host=Host(secrets=tuple(secrets)))
    published = json.loads((tmp_path / "run" / "run.json").read_text())
    assert published["config"] == record["config"] and published["config"]["experiment"] == secret
    write_json(tmp_path / "other.json", {"config": {"x": secret}, "error": f"401 for {secret}"}, secrets,
               verbatim=("config",))
    assert json.loads((tmp_path / "other.json").read_text()) == {"config": {"x": secret}, "error": "401 for ***"}
    assert _snapshot(finished) == before


# -- reports: a malformed table is one line -------------------------------------------------------------
@pytest.mark.parametrize("command", ["tables", "figures"])
@pytest.mark.parametrize("text", ["a,b\n1,2\n", "run_id,round\n\"x,1\n", "\xff\xfe\x00garbage"])
def test_reports_on_a_malformed_table_end_with_one_line(tmp_path, capsys, finished, command, text):
    before = _snapshot(finished)
    table = tmp_path / "all_runs.csv"
    table.write_bytes(text.encode("latin-1"))
    assert main([command, "--input", str(table), "--out", str(tmp_path / "out"), "--wandb-mode", "disabled"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"ferret: error: {table}") and "Traceback" not in "".join(lines)
    assert len(lines) <= 2  # tables also notes the absent all_examples.csv
    assert _snapshot(finished) == before
