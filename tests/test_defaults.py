"""Every run-config default has one source (RunConfig): the CLI, `ferret show-config`, the workflow
schema and the schema's method list must agree with it, so a changed default cannot drift."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from ferret.algorithms import registry
from ferret.cli import build_parser
from ferret.config import RunConfig, default_config_text, describe, load_config, resolved_default_text

SCHEMA = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
DEFAULTS = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            for f in dataclasses.fields(RunConfig)}


def test_show_config_lists_every_key_with_the_dataclass_default():
    shown = {line.split()[0]: line for line in describe().splitlines()}
    assert set(shown) == set(DEFAULTS)
    for key, default in DEFAULTS.items():
        assert shown[key].split(None, 1)[1].startswith(repr(default)), key


def test_cli_options_named_like_run_keys_default_to_the_dataclass():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.dest in DEFAULTS and action.default is not None:
                assert action.default == DEFAULTS[action.dest], f"ferret {name} --{action.dest}"
                checked += 1
    assert checked  # the report commands' --wandb-mode at least


def _schema_defaults(node: object, path: str = "") -> list[str]:
    if isinstance(node, dict):
        found = [path] if "default" in node else []
        return found + [p for k, v in node.items() for p in _schema_defaults(v, f"{path}.{k}")]
    if not isinstance(node, list):
        return []
    return [p for i, v in enumerate(node) for p in _schema_defaults(v, f"{path}[{i}]")]


def test_workflow_schema_restates_no_run_default():
    """The schema's one default is a workflow key's own (threads_per_run); run keys (wandb.*)
    and resources take theirs from RunConfig and common.smk."""
    assert _schema_defaults(SCHEMA) == [".properties.threads_per_run"]
    assert _schema_defaults({"a": {"default": 1}, "b": [{"c": {"default": 2}}]}) == [".a", ".b[0].c"]


def restated_defaults(embedded: dict) -> list[str]:
    """Keys of an embedded run config whose value is the default it would get anyway."""
    same = [k for k, v in embedded.items() if k != "method_options" and v == DEFAULTS[k]]
    for method, options in (embedded.get("method_options") or {}).items():
        defaults = dataclasses.asdict(registry.options_for(method, {}))
        same += [f"method_options.{method}.{k}" for k, v in options.items() if defaults.get(k) == v]
    return same


def test_embedded_run_config_restates_no_default():
    # The check can fail: a restated dataclass default and a restated method option are named.
    basis = registry.options_for("ferret", {}).basis
    assert restated_defaults({"K": DEFAULTS["K"], "rounds": DEFAULTS["rounds"] + 1,
                              "method_options": {"ferret": {"basis": basis, "slr_min": 0.5}}}) == [
        "K", "method_options.ferret.basis"]
    assert restated_defaults(yaml.safe_load(default_config_text()) or {}) == []


def test_show_config_default_prints_the_full_resolved_config():
    assert yaml.safe_load(resolved_default_text()) == load_config().to_dict()
    assert set(yaml.safe_load(resolved_default_text())) == set(DEFAULTS)


def test_keys_without_effect_are_declared_once_on_the_fields():
    """The run folder, the checkpoints and the untuned evaluation read one declaration
    (RunConfig field metadata "scope"); the keys are written out here so a change is seen."""
    from ferret import checkpoint, outdir, untuned
    from ferret.config import keys_outside_evaluation, keys_without_effect

    neutral = {"threads", "checkpoint_every", "checkpoint_every_s", "wandb_mode", "wandb_project", "wandb_entity",
               "untuned"}
    assert keys_without_effect() == neutral == outdir.IGNORED_KEYS == checkpoint.RESUME_IGNORES
    assert untuned.TRAINING_KEYS == keys_outside_evaluation() > neutral
    assert {"lr", "seed", "method", "K"} <= keys_outside_evaluation()
    assert not {"model", "dataset", "dtype", "max_new_tokens", "eval_seed"} & keys_outside_evaluation()
