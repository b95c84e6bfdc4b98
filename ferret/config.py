"""Typed run configuration: YAML file < `key=value` overrides, validated before anything heavy.

Precedence: the dataclass defaults below, then the YAML file (``--config``; without one the
embedded ``ferret/configs/default.yaml``), then command-line ``key=value`` overrides. Nested
method options are overridden with a dotted key, e.g. ``method_options.ferret.basis=rademacher``.
The workflow builds each grid point's config from its mapping (:func:`config_from_mapping`) and
writes it with :func:`write_config`; ``load_config(path)`` reads back the same config.

Every error is a :class:`ConfigError` whose one-line message names the offending key and value.
Method-specific options (``method_options``) are validated by the method's own ``Options``
dataclass, resolved through the registry, so this module never names a method.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ferret.coercion import bounded, coerce, shown
from ferret.hints import did_you_mean


class ConfigError(ValueError):
    """A bad configuration value; the message is one line and names the value."""


# What a key can change, declared once on each field (metadata "scope"; absent = EVALUATION) and
# read by the run folder, the checkpoints and the untuned evaluation (the functions below).
EVALUATION = "evaluation"  # the run's numbers, the untuned model's evaluation included
TRAINING = "training"  # the run's numbers or names, never the untuned model or its eval set
NO_EFFECT = "no-effect"  # how a run executes or logs: never a number of it


@dataclass
class RunConfig:
    """One federated run. Field help is in ``metadata``; ``ferret show-config`` prints it.

    These defaults (with each method's ``Options``) are the one source of every run default: the
    embedded ferret/configs/default.yaml holds only what the embedded CPU run changes (nothing
    today), and the CLI, the workflow schema and ``ferret show-config`` take theirs from here
    (tests/test_defaults.py)."""

    # what runs
    method: str = field(default="ferret", metadata={
        "scope": TRAINING, "help": "registry name or 'package.module:Class'"})
    model: str = field(default="smollm2-135m", metadata={"help": "alias (smollm2-135m, tiny), local path or hub id"})
    dataset: str = field(default="synthetic", metadata={"help": "data set name (synthetic, natural-instructions, "
                                                                 "dolly, codealpaca, gsm8k)"})
    experiment: str = field(default="default", metadata={"scope": TRAINING, "help": "experiment name (W&B group)"})
    run_id: str = field(default="", metadata={
        "scope": TRAINING, "help": "run id; empty derives one from method and seed"})
    # federation
    num_clients: int = field(default=12, metadata={"scope": TRAINING, "help": "number of clients"})
    participation: float = field(default=0.25, metadata={
        "scope": TRAINING, "help": "fraction of clients sampled per round, in (0, 1]"})
    rounds: int = field(default=6, metadata={"scope": TRAINING, "help": "communication rounds"})
    equal_weight: bool = field(default=True, metadata={
        "scope": TRAINING, "help": "equal aggregation weights (else by data size)"})
    # local training (the official code's semantics: local_steps counts micro-batches,
    # one optimizer step every n_accum of them)
    local_steps: int = field(default=4, metadata={"scope": TRAINING, "help": "local micro-batches per round"})
    local_epochs: int = field(default=0, metadata={
        "scope": TRAINING, "help": "N > 0: N passes over the client's data per round "
                                   "instead of local_steps (the paper's 'one local "
                                   "epoch'); 0 = local_steps"})
    batch_size: int = field(default=4, metadata={"scope": TRAINING, "help": "examples per micro-batch"})
    n_accum: int = field(default=1, metadata={"scope": TRAINING, "help": "micro-batches per optimizer step"})
    lr: float = field(default=1e-3, metadata={"scope": TRAINING, "help": "client learning rate"})
    momentum: float = field(default=0.0, metadata={"scope": TRAINING, "help": "client SGD momentum (official: 0)"})
    weight_decay: float = field(default=0.0, metadata={"scope": TRAINING, "help": "client weight decay"})
    grad_clip: float = field(default=0.0, metadata={
        "scope": TRAINING, "help": "client gradient-norm clip; <= 0 disables"})
    # shared-randomness methods
    K: int = field(default=64, metadata={"scope": TRAINING, "help": "number of random bases / seeds"})
    slr: float = field(default=1.0, metadata={"scope": TRAINING, "help": "server learning rate"})
    method_options: dict = field(default_factory=dict,
                                 metadata={"scope": TRAINING, "help": "per-method options: {method: {option: value}}"})
    # data
    num_tasks: int = field(default=12, metadata={"help": "task families (synthetic): client i holds task i mod "
                                                     "num_tasks; the eval set covers all of them"})
    train_per_client: int = field(default=64, metadata={"help": "training instances per client (synthetic)"})
    eval_per_task: int = field(default=4, metadata={"help": "held-out instances per task (synthetic)"})
    max_length: int = field(default=128, metadata={"help": "max tokens of prompt + response"})
    data_path: str = field(default="", metadata={"help": "real data sets: a local path or a Hugging Face dataset id"})
    dirichlet_alpha: float = field(default=0.5, metadata={"help": "dolly: Dirichlet alpha of the category split; "
                                                                  "0 = IID (official --iid dir0.5)"})
    eval_category: str = field(default="summarization", metadata={"help": "dolly: category held out for zero-shot "
                                                                          "evaluation (official --zerotask 7)"})
    codealpaca_split: str = field(default="iid", metadata={"help": "codealpaca: iid (seeded IID clients) or "
                                                                    "language (the paper's nine clients, one per "
                                                                    "programming language)"})
    eval_seed: int = field(default=0, metadata={"help": "seed of the held-out eval set (synthetic), apart from "
                                                        "`seed` so every run of a grid is scored on the same set"})
    eval_limit: int = field(default=0, metadata={"help": "real data sets: at most this many eval instances "
                                                         "(a fixed sample); 0 = all"})
    # evaluation
    eval_every: int = field(default=2, metadata={
        "scope": TRAINING, "help": "eval loss every N rounds (and at the end)"})
    rouge_every: int = field(default=0, metadata={
        "scope": TRAINING, "help": "Rouge-L every N rounds; 0 = before training and at the end"})
    eval_batch_size: int = field(default=16, metadata={"help": "batch size for evaluation and generation"})
    max_new_tokens: int = field(default=16, metadata={"help": "greedy generation length for Rouge-L"})
    untuned: str = field(default="", metadata={
        "scope": NO_EFFECT, "help": "folder of `ferret eval-untuned` for this model and eval set: "
                                    "round 0 is read from it instead of re-evaluated; empty = "
                                    "evaluate round 0 in the run"})
    # execution
    seed: int = field(default=0, metadata={
        "scope": TRAINING, "help": "root seed: sampling, data order, init and all shared seeds"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or cuda:N"})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16: the weights' dtype "
                                                        "(pure) or the compute dtype (mixed)"})
    precision: str = field(default="pure", metadata={"help": "pure: weights and arithmetic in dtype (the official "
                                                             "code: float16, plain SGD, no loss scaling); mixed: "
                                                             "float32 master weights, forward/backward in dtype "
                                                             "under torch.autocast, float16 with loss scaling"})
    tf32: bool = field(default=True, metadata={"help": "CUDA only: TensorFloat-32 for float32 matmuls and "
                                                   "convolutions (10-bit mantissa inputs, fp32 sums); "
                                                   "false = full fp32"})
    threads: int = field(default=0, metadata={"scope": NO_EFFECT, "help": "torch CPU threads; 0 keeps torch's default"})
    offload: str = field(default="host", metadata={"help": "where the server's model-sized state (global weights, "
                         "running sums) lives: host (CPU memory, pinned on CUDA; the official layout) or device "
                         "(beside the model: faster when it fits)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in the backward "
                                         "pass (first-order methods; for long sequences)"})
    checkpoint_every: int = field(default=1, metadata={
        "scope": NO_EFFECT, "help": "checkpoint every N rounds under <out>/checkpoints "
                                    "(a rerun resumes from it); 0 = never"})
    checkpoint_every_s: float = field(default=0.0, metadata={
        "scope": NO_EFFECT, "help": "seconds: a method whose checkpoint holds its weights (all but ferret, "
                                    "fedkseed, fedkseed-pro) checkpoints only once this long has passed since "
                                    "its last one, at a checkpoint_every round; 0 = every checkpoint_every rounds"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code (off by default)"})
    trust_custom_method: bool = field(default=False, metadata={"scope": TRAINING,
        "help": "allow method= / method_options keys naming an unregistered 'package.module:Class' (imports it)"})
    # Weights & Biases (never required: no key or no network means offline or off, never a failure)
    wandb_mode: str = field(default="auto", metadata={"scope": NO_EFFECT, "help": "auto, online, offline or disabled"})
    wandb_project: str = field(default="", metadata={
        "scope": NO_EFFECT, "help": "W&B project; empty: $WANDB_PROJECT or ferret-bench"})
    wandb_entity: str = field(default="", metadata={
        "scope": NO_EFFECT, "help": "W&B entity; empty: $WANDB_ENTITY or your default"})

    def resolved_run_id(self) -> str:
        return self.run_id or f"{self.method}-seed{self.seed}"

    @property
    def clients_per_round(self) -> int:
        """Clients sampled each round: max(1, int(num_clients * participation))."""
        return max(1, int(self.num_clients * self.participation))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """Every key, in field order; ``load_config`` of the text gives this config back exactly
        (PyYAML writes floats in a form it reads back as the same float)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _scoped(*scopes: str) -> frozenset[str]:
    return frozenset(name for name, f in _FIELDS.items() if f.metadata.get("scope", EVALUATION) in scopes)


def keys_without_effect() -> frozenset[str]:
    """Keys that cannot change a run's numbers: a finished run or a checkpoint made under other
    values of them is still this run's (ferret/outdir.py, ferret/checkpoint.py)."""
    return _scoped(NO_EFFECT)


def keys_outside_evaluation() -> frozenset[str]:
    """Keys that cannot change the untuned model or its eval set (ferret/untuned.py)."""
    return _scoped(NO_EFFECT, TRAINING)
_TYPES = typing.get_type_hints(RunConfig)
_DTYPES = ("float32", "bfloat16", "float16")
PRECISIONS = ("pure", "mixed")  # ferret/precision.py
WANDB_MODES = ("auto", "online", "offline", "disabled")


def _unknown_key(key: str, known: typing.Iterable[str]) -> ConfigError:
    return ConfigError(f"unknown config key {shown(key)}{did_you_mean(key, known)}")


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {shown(item)} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""  # a SafeLoader subclass
    except AliasError as e:
        raise ConfigError(f"override {bounded(key)}=...: {e}") from None
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of more than 4300 digits
        value = raw
    return key, value


def _apply(values: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if head not in _FIELDS:
        raise _unknown_key(head, _FIELDS)
    if rest:
        if _TYPES[head] is not dict:
            raise ConfigError(f"{shown(key)}: '{head}' has no sub-keys")
        node = values.setdefault(head, {})
        # Option names have no dots but method paths may ("pkg.module:Class"): split at the last.
        *parents, leaf = rest.rsplit(".", 1) if head == "method_options" else rest.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{shown(key)}: {shown(part)} is not a mapping")
        node[leaf] = value  # typed by the method's Options (registry.option_values)
    else:
        values[head] = coerce(key, value, _TYPES[head], ConfigError)


class AliasError(yaml.YAMLError):
    """A YAML alias (``*name``): refused, since a few of them nested expand a small file to gigabytes."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that rejects a key given twice in one mapping (plain YAML keeps the last)
    and any alias (``*name``): no run config needs one, and nested aliases are a memory bomb."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasError(f"YAML alias *{bounded(str(event.anchor), 40)} at line {event.start_mark.line + 1} "
                             "is not allowed in a config; write the value out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(f"config {path} is not UTF-8 text (byte {e.start}, line {line}: "
                          f"{e.object[e.start:e.start + 1]!r})") from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except AliasError as e:
        raise ConfigError(f"config {path}: {e}") from None
    except ValueError as e:  # not a YAMLError: an integer of more than 4300 digits
        raise ConfigError(f"config {path}: unreadable value ({bounded(str(e))})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {path}{where}: {bounded(str(getattr(e, 'problem', e)))}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of key: value, got {type(data).__name__}")
    return data


def refuse_aliases(path: str | Path) -> None:
    """Raise ConfigError if the YAML file at ``path`` uses an alias (the workflow's grid files)."""
    try:
        yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except AliasError as e:
        raise ConfigError(f"config {path}: {e}") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return  # the loader that reads the file reports those


def default_config_text() -> str:
    """The embedded run config as written: only what differs from the dataclass defaults."""
    return resources.files("ferret.configs").joinpath("default.yaml").read_text()


def resolved_default_text() -> str:
    """The embedded default run config with every key resolved, as YAML (``ferret show-config --default``)."""
    return yaml.safe_dump(load_config(None).to_dict(), sort_keys=False)


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Build and validate a RunConfig from a YAML file (or the embedded default) and overrides."""
    data = read_yaml(path) if path is not None else yaml.safe_load(default_config_text())
    return config_from_mapping(data or {}, overrides)


def config_from_mapping(data: typing.Mapping[str, Any], overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Build and validate a RunConfig from a mapping of keys (as a YAML file holds them) and overrides;
    method options are stored with their options' types (so ``to_yaml`` writes numbers as numbers)
    and in name order."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        _apply(values, str(key), value)
    given: set[str] = set()
    for item in overrides:
        key, value = _parse_override(item)
        if key in given:
            raise ConfigError(f"{shown(key)} is given twice on the command line; give each key once")
        given.add(key)
        _apply(values, key, value)
    cfg = RunConfig(**values)
    validate(cfg)
    from ferret.algorithms import registry

    # In name order (the order carries no meaning), so the same options always read the same.
    cfg.method_options = {name: dict(sorted(registry.option_values(name, cfg.method_options,
                                                                   cfg.trust_custom_method).items()))
                          for name in sorted(cfg.method_options)}
    return cfg


def write_config(cfg: RunConfig, path: str | Path) -> bool:
    """Write ``cfg.to_yaml()`` to ``path`` unless the file already holds exactly that text (so its
    modification time, which Snakemake compares, changes only with the config); True if written."""
    p = Path(path)
    text = cfg.to_yaml()
    try:
        if p.read_text() == text:
            return False
    except OSError:
        pass
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text)
    tmp.replace(p)  # a reader never sees half a file
    return True


def _check(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={shown(value)}: {rule}")


# Upper bounds of the counts: generous for any real run, finite so a typo (threads=10000, an extra
# zero or three) is refused at once instead of running for days or exhausting memory.
LIMITS: dict[str, int] = {
    "num_clients": 100_000, "rounds": 1_000_000, "local_steps": 1_000_000, "local_epochs": 1_000,
    "batch_size": 65_536, "n_accum": 65_536, "K": 1_000_000_000, "max_length": 1_048_576,
    "eval_every": 1_000_000, "rouge_every": 1_000_000, "eval_batch_size": 65_536, "max_new_tokens": 65_536,
    "train_per_client": 10_000_000, "eval_per_task": 1_000_000, "num_tasks": 100_000, "eval_limit": 10_000_000,
    "threads": 1_024, "checkpoint_every": 1_000_000, "seed": 2**63 - 1, "eval_seed": 2**63 - 1,
}
_FLOAT_LIMITS: dict[str, float] = {"lr": 1e6, "slr": 1e6, "weight_decay": 1e6, "grad_clip": 1e12,
                                   "dirichlet_alpha": 1e12}
_DEVICE = re.compile(r"cpu|cuda(:\d{1,3})?")


def validate(cfg: RunConfig) -> None:
    """Check ranges and names without loading a model or data; raise ConfigError on the first bad value."""
    # Imported here so that `ferret.config` stays importable without torch for light tooling.
    from ferret.algorithms import registry
    from ferret.data import registry as data_registry
    from ferret.data.types import DataError
    from ferret.models import ModelError, check_model_name

    for key in ("num_clients", "rounds", "local_steps", "batch_size", "n_accum", "K", "max_length",
                "eval_every", "eval_batch_size", "max_new_tokens", "train_per_client", "eval_per_task", "num_tasks"):
        _check(getattr(cfg, key) > 0, key, getattr(cfg, key), "must be > 0")
    _check(0.0 < cfg.participation <= 1.0, "participation", cfg.participation, "must be in (0, 1]")
    _check(int(cfg.num_clients * cfg.participation) >= 1, "participation", cfg.participation,
           f"selects no client of num_clients={cfg.num_clients} (needs participation >= 1/num_clients)")
    _check(cfg.lr > 0, "lr", cfg.lr, "must be > 0")
    _check(cfg.slr > 0, "slr", cfg.slr, "must be > 0")
    _check(0.0 <= cfg.momentum < 1.0, "momentum", cfg.momentum, "must be in [0, 1)")
    _check(cfg.weight_decay >= 0, "weight_decay", cfg.weight_decay, "must be >= 0")
    _check(cfg.local_epochs >= 0, "local_epochs", cfg.local_epochs, "must be >= 0 (0 = use local_steps)")
    # An epoch's micro-batch count depends on the client, so no n_accum can be checked to divide it.
    _check(cfg.local_epochs == 0 or cfg.n_accum == 1, "n_accum", cfg.n_accum,
           f"must be 1 with local_epochs={cfg.local_epochs} (an epoch's length varies by client)")
    _check(cfg.rouge_every >= 0, "rouge_every", cfg.rouge_every, "must be >= 0")
    _check(cfg.threads >= 0, "threads", cfg.threads, "must be >= 0")
    _check(cfg.checkpoint_every >= 0, "checkpoint_every", cfg.checkpoint_every, "must be >= 0 (0 = never)")
    _check(cfg.checkpoint_every_s >= 0, "checkpoint_every_s", cfg.checkpoint_every_s,
           "must be >= 0 (0 = every checkpoint_every rounds)")
    for key in ("participation", "lr", "slr", "momentum", "weight_decay", "grad_clip", "checkpoint_every_s"):
        _check(math.isfinite(getattr(cfg, key)), key, getattr(cfg, key), "must be a finite number")
    _check(cfg.local_steps % cfg.n_accum == 0, "n_accum", cfg.n_accum,
           f"must divide local_steps={cfg.local_steps}")
    _check(cfg.wandb_mode in WANDB_MODES, "wandb_mode", cfg.wandb_mode, f"must be one of {', '.join(WANDB_MODES)}")
    _check(cfg.dtype in _DTYPES, "dtype", cfg.dtype, f"must be one of {', '.join(_DTYPES)}")
    _check(cfg.precision in PRECISIONS, "precision", cfg.precision, f"must be one of {', '.join(PRECISIONS)}")
    _check(cfg.precision != "mixed" or cfg.dtype != "float32", "precision", cfg.precision,
           "needs a 16-bit dtype (dtype=bfloat16 or float16): float32 compute is not mixed")
    for key, limit in LIMITS.items():  # abs: the seeds may be negative
        _check(abs(getattr(cfg, key)) <= limit, key, getattr(cfg, key),
               f"must be at most {limit}" + (" in magnitude" if key.endswith("seed") else ""))
    _check(cfg.eval_limit >= 0, "eval_limit", cfg.eval_limit, "must be >= 0 (0 = all)")
    for key, flimit in _FLOAT_LIMITS.items():
        _check(abs(getattr(cfg, key)) <= flimit, key, getattr(cfg, key), f"must be at most {flimit:g} in size")
    _check(bool(_DEVICE.fullmatch(cfg.device)), "device", cfg.device, "must be cpu, cuda or cuda:N")
    _check(cfg.dataset != "synthetic" or not cfg.data_path, "data_path", cfg.data_path,
           "is for the real data sets; the synthetic set is generated (leave data_path empty)")
    _check(cfg.offload in ("host", "device"), "offload", cfg.offload, "must be one of host, device")
    _check(bool(cfg.run_id == "" or cfg.run_id.replace("-", "").replace("_", "").replace(".", "").isalnum()),
           "run_id", cfg.run_id, "may hold only letters, digits, '-', '_' and '.'")
    try:
        data_registry.check_data_config(cfg)
        check_model_name(cfg.model)
        # Every method's options, not only the running one's: a grid shares one method_options.
        for name in dict.fromkeys([cfg.method, *cfg.method_options]):
            registry.options_for(name, cfg.method_options, cfg.trust_custom_method)
    except (DataError, ModelError, registry.UnknownMethodError) as e:
        raise ConfigError(str(e)) from None
    _check_custom_code(cfg)


def _check_custom_code(cfg: RunConfig) -> None:
    """A local model folder whose config maps Auto classes to its own code (``auto_map``) would run
    that code on load: refused unless ``trust_remote_code: true`` (hub ids: transformers refuses)."""
    from ferret.models import ALIASES

    folder = Path(cfg.model).expanduser()
    if cfg.trust_remote_code or cfg.model in ALIASES or not folder.is_dir():
        return
    mapped = []
    for name in ("config.json", "tokenizer_config.json"):
        try:
            if "auto_map" in json.loads((folder / name).read_text()):
                mapped.append(name)
        except (OSError, ValueError, TypeError):
            continue
    if mapped:
        code = ", ".join(sorted(p.name for p in folder.glob("*.py"))) or "remote modules"
        raise ConfigError(f"model={cfg.model!r} holds custom code ({code}, auto_map in {', '.join(mapped)}); "
                          "it runs only with trust_remote_code: true")


def describe() -> str:
    """Human-readable list of config keys with defaults and help."""
    lines = []
    for f in dataclasses.fields(RunConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"{f.name:18s} {default!r:16s} {f.metadata.get('help', '')}")
    return "\n".join(lines)


def describe_methods() -> str:
    """The registered methods with their options' defaults (``method_options.<method>.<option>``)."""
    from ferret.algorithms import registry

    lines = ["methods (method: NAME, or methods: all in a grid; options under method_options.NAME):"]
    for name, method in registry.methods().items():
        options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(method.options)) or "no options"
        lines.append(f"  {name:14s} {options}")
    return "\n".join(lines)
