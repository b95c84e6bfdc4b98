"""environment.yml (the GPU route) pins what the CPU route (constraints-cpu.txt) is tested with."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def _name(package: str) -> str:
    return re.sub(r"[-_.]+", "-", package).lower()  # PEP 503 normalisation


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = PIN.match(line.strip())
        if m:
            pins[_name(m.group(1))] = m.group(2)
    return pins


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pip_lines(env: dict) -> list[str]:
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    return pip


def test_uses_only_maintained_channels():
    env = _environment()
    assert env["channels"] == ["conda-forge"]  # the pytorch/nvidia channels stopped at torch 2.5.1
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert not [d for d in conda if re.match(r"(pytorch|pytorch-cuda|cudatoolkit)\b", d)], conda


def test_pins_agree_with_the_cpu_route():
    constraints = _pins((ROOT / "constraints-cpu.txt").read_text().splitlines())
    pip = _pip_lines(_environment())
    pins = _pins(pip)
    assert "torch" in pins  # the torch the suite is tested with, not whatever resolves
    shared = set(pins) & set(constraints)
    assert shared == set(pins), f"pinned in environment.yml but not in constraints-cpu.txt: {set(pins) - shared}"
    assert {p: pins[p] for p in shared} == {p: constraints[p] for p in shared}
    # The rest is constrained by the same file, so nothing floats.
    assert "-c constraints-cpu.txt" in pip and (ROOT / "constraints-cpu.txt").is_file()


def test_python_matches_the_interpreter_the_suite_runs_on():
    conda = [d for d in _environment()["dependencies"] if isinstance(d, str)]
    (python,) = [d for d in conda if d.startswith("python=")]
    assert python == f"python={sys.version_info.major}.{sys.version_info.minor}"


def test_installs_the_project_with_its_test_and_slurm_extras():
    pip = _pip_lines(_environment())
    editable = [line for line in pip if line.startswith("-e ")]
    assert editable == ["-e .[test,slurm]"]


def test_no_rule_names_a_conda_env():
    """Every rule runs `sys.executable -m ferret`, the interpreter that runs Snakemake, so a rule's
    `conda:` env could never take effect: the rules name none (environment.yml builds the one env)."""
    rules = [p for p in (ROOT / "workflow").rglob("*.smk")] + [ROOT / "Snakefile"]
    assert rules and not [p.name for p in rules if re.search(r"^\s+conda:", p.read_text(), re.M)]
    assert not (ROOT / "workflow/envs").exists()
