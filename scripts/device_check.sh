#!/usr/bin/env bash
# One prepared device check for issue 16 (one `run` call, <= 8 minutes on one H200): the CUDA
# tests of the projection and its Triton kernels, then `ferret bench projection` on the GPU.
# Usage: scripts/device_check.sh [OUT_DIR] [DEVICE]   (DEVICE cpu: a seconds-long dry run of the
# same steps at tiny sizes, to check the script itself where no GPU is lent).
# Each step has its own timeout so that one slow step cannot take the others' time.
set -uo pipefail
out=${1:-${OUT:-results/device_check}}
device=${2:-cuda}
mkdir -p "$out"
py=${PYTHON:-python}
status=0

step() {  # step NAME SECONDS COMMAND...: run, log to $out/NAME.log, remember a failure
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0))s"
  tail -n 5 "$out/$name.log"
  [ "$rc" -eq 0 ] || status=1
}

{ nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true; uptime; } >"$out/machine.txt"

if [ "$device" = cuda ]; then
  # CUDA tests: bases equal to the CPU's, fused (Triton) products vs the reference, then the
  # interpreter tests (the same kernels' source, on CPU) as a cross-check.
  step tests 150 "$py" -m pytest -q -x tests/test_projection.py -k "cuda or fused or triton" tests/test_kernels_triton.py
  step bench_projection 270 "$py" -m ferret bench projection --device cuda --d 10000000,100000000 \
    --K 256,1024 --bases rademacher,trunc_normal --budget-s 240 --official-s 20 --repeats 3 \
    --out "$out" --figures "$out"
else
  step tests 120 "$py" -m pytest -q -x tests/test_kernels_triton.py
  step bench_projection 120 "$py" -m ferret bench projection --device cpu --d 100000 --K 16 \
    --bases rademacher,trunc_normal --budget-s 60 --official-s 2 --repeats 1 --out "$out" --figures "$out"
fi
exit "$status"
