"""Security defaults: no custom model code without trust_remote_code, no secrets in any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import tiny_overrides

from ferret.atomic import write_json
from ferret.cli import main
from ferret.config import load_config
from ferret.models import ModelError, load_model_and_tokenizer
from ferret.redaction import redact, secret_values

EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("custom code ran")
from transformers import LlamaForCausalLM as EvilForCausalLM
"""


@pytest.fixture
def custom_code_model(tmp_path):
    """A model folder whose config.json maps AutoModelForCausalLM to its own modeling_evil.py,
    which leaves a marker file when it is imported."""
    folder = tmp_path / "custom-model"
    folder.mkdir()
    marker = tmp_path / "marker.txt"
    (folder / "modeling_evil.py").write_text(EVIL.format(marker=str(marker)))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["EvilForCausalLM"],
        "auto_map": {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"},
        "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "vocab_size": 64}))
    return folder, marker


def test_custom_code_is_refused_without_trust_remote_code(tmp_path, capsys, custom_code_model):
    folder, marker = custom_code_model
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), *tiny_overrides(model=str(folder))]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(folder) in err and "trust_remote_code: true" in err, err
    assert "modeling_evil.py" in err
    assert not marker.exists() and not out.exists()
    # Opting in passes validation (the code would then run on load).
    assert load_config(None, tiny_overrides(model=str(folder), trust_remote_code="true")).trust_remote_code


def test_the_loader_never_runs_custom_code_by_default(custom_code_model):
    """Even past the config check, the loader passes trust_remote_code=False: the module never runs."""
    folder, marker = custom_code_model
    with pytest.raises(ModelError):  # the folder has no weights or tokenizer
        load_model_and_tokenizer(str(folder))
    assert not marker.exists()
    # Control: with trust_remote_code=True the same load does import the module (in a subprocess
    # whose transformers module cache is a temporary folder).
    code = f"from ferret.models import *\ntry: load_model_and_tokenizer({str(folder)!r}, trust_remote_code=True)\n" \
           "except ModelError: pass"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True,
                   env={**os.environ, "HF_MODULES_CACHE": str(folder.parent / "modules")})
    assert marker.read_text() == "custom code ran"


SECRETS = {"WANDB_API_KEY": "wandbFAKEkey0123456789abcdef0123456789abcd",
           "HF_TOKEN": "hf_FAKEtokenABCDEFGHIJKLMNOP",
           "HUGGING_FACE_HUB_TOKEN": "hf_FAKEhubTokenQRSTUVWXYZ0123",
           "OPENAI_API_KEY": "sk-FAKEopenai0123456789",
           "MY_SERVICE_PASSWORD": "hunter2-FAKE-password"}


def test_secrets_in_the_environment_never_reach_outputs_logs_or_wandb(tmp_path):
    """A real run with fake secrets in its environment and W&B offline (so it writes its files):
    no secret appears in run.json, metrics.csv, the W&B run folder (config, logs, history) or
    the console output."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    env.update(SECRETS, HOME=str(tmp_path / "home"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
               WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"), WANDB_DATA_DIR=str(tmp_path / "wandb-data"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ferret", "run", "--out", str(out),
                           *tiny_overrides(method="fedavg", rounds=1, num_tasks=2, eval_per_task=1, threads=1,
                                           wandb_mode="offline")],
                          env=env, capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".wandb") for p in files)  # W&B really wrote its run
    assert any(p.name == "debug.log" for p in files)
    for secret in SECRETS.values():
        needle = secret.encode()
        assert needle not in proc.stdout and needle not in proc.stderr
        leaked = [str(p) for p in files if needle in p.read_bytes()]
        assert not leaked, (secret, leaked)


def test_redact_replaces_secret_values_wherever_they_appear(tmp_path):
    env = {"HF_TOKEN": "hf_FAKEtokenABCDEFGHIJKLMNOP", "WANDB_API_KEY": "x" * 40, "SHORT_KEY": "1",
           "PATH": "/usr/bin"}
    data = {"config": {"experiment": "run-hf_FAKEtokenABCDEFGHIJKLMNOP", "K": 1, "path": "/usr/bin"},
            "error": ["OSError: 401 for key " + "x" * 40]}
    assert redact(data, secret_values(env)) == {"config": {"experiment": "run-***", "K": 1, "path": "/usr/bin"},
                                                "error": ["OSError: 401 for key ***"]}
    write_json(tmp_path / "run.json", data, secret_values(env))
    text = (tmp_path / "run.json").read_text()
    assert env["HF_TOKEN"] not in text and "run-***" in text
