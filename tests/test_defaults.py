"""Every run-config default has one source (RunConfig): the CLI, `ferret show-config`, the workflow
schema and the schema's method list must agree with it, so a changed default cannot drift."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from ferret.algorithms.registry import METHODS
from ferret.cli import build_parser
from ferret.config import RunConfig, describe

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


def test_workflow_schema_defaults_match_the_dataclass():
    wandb = SCHEMA["properties"]["wandb"]["properties"]
    for key, spec in wandb.items():
        assert spec["default"] == DEFAULTS[f"wandb_{key}"], f"wandb.{key}"


def test_schema_method_enum_is_the_registry():
    enum = SCHEMA["definitions"]["method"]["anyOf"][0]["enum"]
    assert enum == list(METHODS)
