#!/usr/bin/env bash
# The device check: one prepared call of at most 8 minutes on one H100/H200 (the CUDA tests, kernel
# speed against the official per-seed loop, each method's local-training peak at the LLaMA2-13B
# shape in bf16 and fp16 at 512 and 1024 tokens, a LLaMA-3B-shaped round beside Tables 4 and 6, a
# checkpoint's seconds). Writes device_check.{json,md,log} into OUT_DIR (default $OUT, else
# results/device_check). Each step has its own time budget; one that fails, runs out of memory or
# hangs is recorded as such and the rest still run (ferret/bench/device_check.py).
# Usage: scripts/device_check.sh [OUT_DIR]
#   DEVICE_CHECK_CPU=1 (or no CUDA): the same steps at tiny shapes (about a minute of CPU time).
#   PYTHON: the interpreter (default: python3); WHEELS: see below. No network is needed; every model
#   is random-init.
set -uo pipefail
out=${1:-${OUT:-results/device_check}}
mkdir -p "$out" && out=$(cd "$out" && pwd)  # absolute, before moving to the repository root
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
cpu_flag=()
[ "${DEVICE_CHECK_CPU:-0}" != 0 ] && cpu_flag=(--cpu)
export PYTHONUNBUFFERED=1
# WHEELS: a folder of wheels for what the machine's Python lacks (ferret needs rouge-score and nltk,
# say), installed into a private folder first, without a network.
if [ -n "${WHEELS:-}" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/ferret-site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/ferret-site${PYTHONPATH:+:$PYTHONPATH}
fi
# The CUDA-only tests (on CPU: collected and skipped, which checks that they still import).
tests="$(printf %q "$py") -m pytest -q -rs -p no:cacheprovider -k cuda tests/test_projection.py tests/test_engine.py"
exec "$py" -m ferret.bench.device_check --out "$out" --tests "$tests" "${cpu_flag[@]}"
