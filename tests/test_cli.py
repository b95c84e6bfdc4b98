"""The command line: config precedence and one-line errors that write nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ferret.cli import main
from ferret.config import ConfigError, RunConfig, load_config


def test_precedence_defaults_file_overrides(tmp_path):
    assert load_config() == RunConfig()  # the embedded default run config changes nothing today
    f = tmp_path / "c.yaml"
    f.write_text("method: fedavg\nK: 8\nlr: 1e-3\n")
    cfg = load_config(f, ["K=32", "method_options.ferret.basis=uniform"])
    assert (cfg.method, cfg.K, cfg.lr) == ("fedavg", 32, 0.001)
    assert cfg.eval_every == RunConfig().eval_every  # keys the file omits keep their defaults
    assert cfg.method_options == {"ferret": {"basis": "uniform"}}


BAD = [
    (["method=fedsgd"], "fedsgd"),
    (["K=0"], "K=0"),
    (["K=-3"], "K=-3"),
    (["participation=0"], "participation=0"),
    (["participation=1.5"], "participation=1.5"),
    (["model=/nonexistent/model-dir"], "/nonexistent/model-dir"),
    (["lerning_rate=0.1"], "lerning_rate"),
    (["rounds=abc"], "rounds='abc'"),
    (["method_options.ferret.basis=sobol"], "sobol"),
    (["dataset=dolly"], "dolly"),
]


@pytest.mark.parametrize("overrides,named", BAD)
def test_bad_input_exits_nonzero_with_one_line_and_writes_nothing(tmp_path, capsys, overrides, named):
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and named in err, err
    assert not out.exists()


def test_dotted_override_reaches_a_path_style_method():
    cfg = load_config(None, ["method=baselines.fedkseed:FedKSeed",
                             "method_options.baselines.fedkseed:FedKSeed.lr=3e-7"])
    assert cfg.method_options["baselines.fedkseed:FedKSeed"] == {"lr": 3e-7}


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'local_steps'"):
        load_config(None, ["local_step=3"])


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("method: ferret\nK: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line"):
        load_config(f)


def test_cli_process_exit_status_and_message(tmp_path):
    """The installed entry point, as a user runs it."""
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "ferret", "run", "--out", str(out), "K=-1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["ferret: error: K=-1: must be > 0"]
    assert not out.exists()


def test_resources_option_is_where_models_are_cached(tmp_path, capsys):
    # An empty folder: the command must build the tiny model's tokenizer cache there and report
    # that folder, not the default resources/ of the working directory (whatever that holds).
    main(["show-config"])  # warm-up so that capsys holds only prepare-model's line below
    capsys.readouterr()
    assert main(["--resources", str(tmp_path), "prepare-model", "--alias", "tiny"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path.resolve() / "tokenizers" / "smollm2")
    assert (tmp_path / "tokenizers" / "smollm2" / "tokenizer.json").is_file()


def test_host_from_env_is_what_the_cli_passes_down(tmp_path):
    from ferret.host import Host

    key = "k" * 40
    host = Host.from_env({"WANDB_API_KEY": key, "WANDB_PROJECT": "p", "HF_TOKEN": "hf_" + "x" * 20,
                          "HOME": str(tmp_path)}, resources=tmp_path)
    assert (host.resources, host.wandb_project, host.wandb_entity) == (tmp_path, "p", None)
    assert host.wandb_mode("auto") == "online" and host.wandb_mode("offline") == "offline"
    assert set(host.secrets) == {key, "hf_" + "x" * 20}
    # Without the CLI nothing is known of the environment: auto logs nowhere, nothing is redacted.
    assert Host().wandb_mode("auto") == "disabled" and Host().secrets == ()
    assert Host.from_env({"HOME": str(tmp_path)}).wandb_mode("auto") == "offline"
