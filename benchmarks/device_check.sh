#!/usr/bin/env bash
# The one script for a GPU machine: environment, the native
# extension built in place with its CUDA kernels, the `gpu` tests (Triton compiled, native CUDA),
# then the op, end-to-end and engine benchmarks and their charts. Everything lands in $OUT
# (default benchmarks/results/device-run); commit the CSVs under benchmarks/results/ with the card
# named, then run `python benchmarks/report.py` (docs/performance.md section 5) and
# `python benchmarks/plot.py`.
#
#   bash benchmarks/device_check.sh            # on the GPU machine (about 7 minutes)
#   bash benchmarks/device_check.sh --smoke    # on a CPU machine: offline sm_90 compile checks,
#                                              # the CPU build, then the same steps on CPU
#
# On the GPU machine the project is not installed: it runs from the checkout on PYTHONPATH.
# The engine benchmark needs deepspeed and what it imports (einops, psutil, py-cpuinfo, soundfile,
# pyyaml): bring their wheels along in .whl/ when that machine lacks them (docs/performance.md 4).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/benchmarks/results/device-run}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
status=0

# On the GPU the whole script stays within ELP_DEVICE_BUDGET_S (default 420 s: 7 minutes): a step
# gets at most what is left, and one that would start with under 15 s left is skipped (and
# reported). The CPU smoke mode has no such budget by default (its steps are slow, not scarce).
if [ "${1:-}" = "--smoke" ]; then DEADLINE="${ELP_DEVICE_BUDGET_S:-100000}"; else DEADLINE="${ELP_DEVICE_BUDGET_S:-420}"; fi
step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the log, remember failures
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "== $name: skipped, the ${DEADLINE}s budget is spent"; status=1; return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "== $name: exit $rc after $((SECONDS - t0))s"
  [ $rc -eq 0 ] || status=1
}

export ELP_FAST_REQUIRE_NATIVE=1  # the native tests fail (not skip) if the build does not load
if [ "${1:-}" = "--smoke" ]; then
  export TRITON_INTERPRET=1
  step build 600 env ELP_FAST_BUILD_EXT=1 "$PY" setup.py -q build_ext --inplace
  step info 60 "$PY" -m elp_fast.info
  step compile-check 300 "$PY" benchmarks/compile_check.py  # every Triton variant, for sm_90
  step kernel-tests 900 "$PY" -m pytest -q -x tests/test_triton_bottleneck_adapter.py \
    tests/test_triton_layer_aggregate.py tests/test_triton_model.py tests/test_native_ops.py \
    tests/test_native_cuda_sources.py
  step bench 300 "$PY" benchmarks/bench_ops.py --smoke --out "$OUT/bench-smoke.csv"
  step bench-cpu 300 "$PY" benchmarks/bench_cpu.py --smoke --out "$OUT/bench-cpu-smoke.csv"
  step saved-bytes 300 "$PY" benchmarks/saved_bytes.py --smoke --out "$OUT/saved-smoke.csv"
  step bench-e2e 600 "$PY" benchmarks/bench_e2e.py --smoke --out "$OUT/bench-e2e-smoke.csv"
  step bench-zero 300 "$PY" benchmarks/bench_engine.py --smoke --backbone tiny-wav2vec2 --zero-stages 2,3 \
    --checkpointing all --out "$OUT/bench-zero-smoke.csv"
  step task-smoke 300 "$PY" benchmarks/task_smoke.py --out "$OUT/task-smoke"
  step report 120 "$PY" benchmarks/plot.py --results "$OUT" --out "$OUT"
else
  export TRITON_INTERPRET=0
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
  # The documented CUDA build (docs/design.md 4.4), in place: CPU + sm_90 kernels.
  step build 100 env ELP_FAST_BUILD_EXT=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="$(nproc)" \
    "$PY" setup.py -q build_ext --inplace
  step info 20 "$PY" -m elp_fast.info
  # Compiles every Triton variant once (the bulk of this step), then checks the full grids of
  # both GPU backends.
  step gpu-tests 90 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/
  # Targets first (E-adapter at the roofline sizes), then the L path; rows are written as they
  # come, so a step cut short by its limit keeps what it measured.
  step bench-bottleneck 50 "$PY" benchmarks/bench_ops.py --ops bottleneck_adapter \
    --out "$OUT/bench-bottleneck.csv"
  step bench-layers 35 "$PY" benchmarks/bench_ops.py --ops layer_aggregate,weighted_layer_sum \
    --sizes realistic,roofline --out "$OUT/bench-layers.csv"
  # What the compiled Triton and CUDA kernels keep for backward (the 2r + 8 target), in seconds.
  step saved-bytes 20 "$PY" benchmarks/saved_bytes.py --device cuda --out "$OUT/saved-bytes.csv"
  # End to end on the card, batch 8 x 16 s, bf16: WavLM-Large first (the target), then the other
  # backbones while its budget lasts; rows are written after every round.
  step bench-e2e 110 "$PY" benchmarks/bench_e2e.py --variants elp-eager,elp-reference,elp-fused,weighted-sum,full,lora \
    --budget-s 80 --out "$OUT/bench-e2e.csv"
  # ZeRO-2 against ZeRO-3 on the largest backbone, through the engine (needs deepspeed from .whl/).
  step bench-zero 75 "$PY" benchmarks/bench_engine.py --backbone xls-r-1b --seconds 16 --micro-batch-size 8 \
    --zero-stages 2,3 --checkpointing all --steps 3 --warmup 2 --out "$OUT/bench-zero.csv"
  # A task recipe on the card: SIC from a tiny fixture, bf16, ZeRO-2, then eval from the adapters
  # (also needs soundfile and pyyaml from .whl/).
  step task-smoke 30 "$PY" benchmarks/task_smoke.py --out "$OUT/task-smoke"
  # ELP under torch.compile last (Inductor compiles the whole 24-layer model: the slowest step),
  # with its own baseline rows in the same run.
  step bench-e2e-compile 90 "$PY" benchmarks/bench_e2e.py --backbones wavlm-large --checkpointing none \
    --variants elp-eager,elp-fused,elp-compile --out "$OUT/bench-e2e-compile.csv"
  step report 15 "$PY" benchmarks/plot.py --results "$OUT" --out "$OUT"
fi
echo "results in $OUT"
exit $status
