#!/usr/bin/env bash
# The one script for a GPU machine (docs/performance.md 4.3): steps in order of evidence per
# second, each with its own time limit, the whole run within ELP_DEVICE_BUDGET_S (default 420 s),
# a ledger ($OUT/steps.json) rewritten after every step. Everything lands in $OUT (default
# benchmarks/results/device-run); commit the CSVs under benchmarks/results/ with the card named,
# then run `python benchmarks/report.py` (docs/performance.md section 5) and `benchmarks/plot.py`.
#
#   bash benchmarks/device_check.sh            # on the GPU machine
#   bash benchmarks/device_check.sh --plan     # the steps, budgets and likely skips; runs nothing
#   bash benchmarks/device_check.sh --smoke    # the same steps at tiny sizes on a CPU (CI)
#
# Steps: wheels, preflight, first-contact, build, first-contact-native, warm, gpu-tests,
# bench-bottleneck, bench-layers, saved-bytes, bench-e2e, bench-zero, task-smoke,
# bench-ops-compile, bench-e2e-compile, report. A step gets at most its budget and what is left
# of the run's (less 10 s for an interrupted step to print its summary); none starts with under
# ELP_DEVICE_MIN_START_S (15 s; smoke 5 s) left; one whose needs preflight found missing
# (Python.h, nvcc, ninja, deepspeed, ...) or whose prerequisite step failed is skipped with the
# reason and costs nothing. A step cut off by its limit gets SIGINT (a traceback; pytest prints
# its summary), then SIGKILL 10 s later.
#
# Knobs: OUT, PYTHON (default .venv/bin/python when there, else python3), ELP_DEVICE_BUDGET_S
# (smoke default 1200), ELP_DEVICE_MIN_START_S, ELP_DEVICE_STEP_S (per-step budgets, e.g.
# "gpu-tests=200,bench-e2e=0"; 0 skips a step for budget), ELP_DEVICE_PACK (a .tar.gz of $OUT,
# renewed after every step, for machines that return a few files). The tile choices of the run
# (kernels/_tuning.py) are kept in $OUT/tiles/tiles.json.
#
# On the GPU machine the project is not installed: it runs from the checkout on PYTHONPATH, with
# .site/ (wheels from .whl/, installed by the wheels step) after it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

MODE=gpu
ACTION=run
for arg in "$@"; do
  case $arg in
    --smoke) MODE=smoke ;;
    --plan) ACTION=plan ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "device_check.sh: unknown argument $arg (expected --smoke, --plan)" >&2; exit 2 ;;
  esac
done

OUT="${OUT:-$PWD/benchmarks/results/device-run}"
PY="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$PWD:$PWD/.site${PYTHONPATH:+:$PYTHONPATH}"
JOBS="$(nproc 2>/dev/null || echo 2)"
export ELP_FAST_CACHE_DIR="${ELP_FAST_CACHE_DIR:-$OUT/tiles}"  # this run's tile choices, returned with it
GRACE=10  # seconds between SIGINT and SIGKILL for a step past its limit

if [ "$MODE" = smoke ]; then
  BUDGET="${ELP_DEVICE_BUDGET_S:-1200}"
  MIN_START="${ELP_DEVICE_MIN_START_S:-5}"
  export TRITON_INTERPRET=1
else
  BUDGET="${ELP_DEVICE_BUDGET_S:-420}"
  MIN_START="${ELP_DEVICE_MIN_START_S:-15}"
  export TRITON_INTERPRET=0
fi
for v in "$BUDGET" "$MIN_START"; do
  case $v in '' | *[!0-9]*) echo "device_check.sh: budgets are whole seconds (got '$v')" >&2; exit 2 ;; esac
done
declare -A STEP_S=()  # ELP_DEVICE_STEP_S overrides
IFS=, read -r -a _overrides <<< "${ELP_DEVICE_STEP_S:-}"
for kv in ${_overrides[@]+"${_overrides[@]}"}; do
  case $kv in
    *=*) STEP_S[${kv%%=*}]=${kv#*=} ;;
    *) echo "device_check.sh: ELP_DEVICE_STEP_S wants name=seconds pairs (got '$kv')" >&2; exit 2 ;;
  esac
  case ${kv#*=} in '' | *[!0-9]*) echo "device_check.sh: ELP_DEVICE_STEP_S: '$kv' is not whole seconds" >&2; exit 2 ;; esac
done

b() {  # b GPU_SECONDS SMOKE_SECONDS: this mode's budget
  if [ "$MODE" = smoke ]; then echo "$2"; else echo "$1"; fi
}

ledger() { "$PY" benchmarks/steps_ledger.py "$@"; }

now() {  # epoch seconds (EPOCHREALTIME has the locale's decimal mark)
  local t=${EPOCHREALTIME:-}
  [ -n "$t" ] || t=$(date +%s)
  echo "${t/,/.}"
}

PREFLIGHT_LOADED=0
load_preflight() {  # load_preflight DIR: the facts the skip rules read
  if [ -f "$1/preflight.env" ]; then
    # shellcheck disable=SC1091
    . "$1/preflight.env"
    PREFLIGHT_LOADED=1
  fi
}

unmet() {  # unmet NEEDS: why a comma list of needs is not met (nothing when all are)
  local need var
  local -a wanted
  IFS=, read -r -a wanted <<< "$1"
  for need in ${wanted[@]+"${wanted[@]}"}; do
    case $need in
      wheels)
        [ "${HAVE_WHEELS:-0}" = 1 ] || { echo "no wheels in .whl/"; return; }
        [ "${WHEELS_INSTALLED:-0}" = 0 ] || { echo "every wheel of .whl/ is already installed in .site/"; return; } ;;
      *)
        [ "$PREFLIGHT_LOADED" = 1 ] || { echo "needs $need, and preflight did not record the machine"; return; }
        case $need in
          device)
            if [ "$MODE" = smoke ]; then
              [ "${HAVE_TORCH:-0}" = 1 ] || { echo "torch does not import (preflight.json)"; return; }
            else
              [ "${HAVE_CUDA:-0}" = 1 ] || { echo "no CUDA device: ${NO_CUDA_WHY:-}"; return; }
            fi ;;
          native)  # the native steps: after a build that succeeded; in smoke mode (built out of
            # place) the checkout's own extension, which must load
            [ "$ACTION" = plan ] && continue
            [ "${OUTCOME[build]:-}" = ok ] ||
              { echo "needs the build step, which did not succeed (${OUTCOME[build]:-not run})"; return; }
            [ "$MODE" = gpu ] || [ "${HAVE_NATIVE:-0}" = 1 ] ||
              { echo "the checkout's extension does not load: ${NATIVE_WHY:-}"; return; } ;;
          torch)  # on the GPU machine: a CUDA torch (a CPU torch would build the CPU ops alone)
            [ "${HAVE_TORCH:-0}" = 1 ] || { echo "torch does not import (preflight.json)"; return; }
            [ "$MODE" = smoke ] || [ "${HAVE_TORCH_CUDA:-0}" = 1 ] ||
              { echo "torch ${TORCH_VERSION:-} is built without CUDA"; return; } ;;
          python_h)
            [ "${HAVE_PYTHON_H:-0}" = 1 ] ||
              { echo "no Python.h in ${PYTHON_INCLUDE:-the Python include directory} (the build needs the Python headers, e.g. python3-dev)"; return; } ;;
          ninja)
            [ "${HAVE_NINJA:-0}" = 1 ] || { echo "no ninja on PATH (without it the build compiles one source at a time)"; return; } ;;
          nvcc)  # the CUDA kernels; the smoke build is the CPU build
            [ "$MODE" = smoke ] || [ "${HAVE_NVCC:-0}" = 1 ] ||
              { echo "no nvcc (CUDA_HOME/bin or PATH): the CUDA kernels cannot be built"; return; } ;;
          *)
            var="HAVE_${need^^}"
            [ "${!var:-0}" = 1 ] || { echo "$need does not import (bring its wheel in .whl/)"; return; } ;;
        esac ;;
    esac
  done
}

declare -A OUTCOME=()
PLAN_NAMES=()
PLAN_BUDGETS=()
N=0
FAILED=0

skip() {  # skip NAME REASON
  OUTCOME[$1]=skipped
  echo "== $1: skipped: $2"
  ledger record "$OUT/steps.json" "$1" skipped --reason "$2"
  pack
}

pack() {  # with ELP_DEVICE_PACK=FILE.tar.gz: all of $OUT in one archive, renewed after every step
  [ -n "${ELP_DEVICE_PACK:-}" ] || return 0
  tar -czf "$ELP_DEVICE_PACK.tmp" --exclude=./native-build --exclude="./$(basename "$ELP_DEVICE_PACK")*" \
    -C "$OUT" . 2>/dev/null && mv "$ELP_DEVICE_PACK.tmp" "$ELP_DEVICE_PACK"
}

step() {  # step NAME BUDGET NEEDS -- COMMAND...: run COMMAND under its limit, log it, record it
  local name=$1 budget=$2 needs=$3 why left limit t0 t1 rc outcome
  shift 3
  [ "${1:-}" = -- ] && shift
  [ -n "${STEP_S[$name]+x}" ] && budget=${STEP_S[$name]}
  case $ACTION in
    collect) PLAN_NAMES+=("$name"); PLAN_BUDGETS+=("$budget"); return 0 ;;
    plan)
      N=$((N + 1))
      why=$(unmet "$needs")
      [ "$budget" = 0 ] && why="budget: 0 s (ELP_DEVICE_STEP_S)"
      printf '%3d  %-20s %5s s  %-34s %s\n' "$N" "$name" "$budget" "${needs:--}" "${why:+would skip: $why}"
      return 0 ;;
  esac
  if [ "$budget" = 0 ]; then skip "$name" "budget: 0 s (ELP_DEVICE_STEP_S)"; return 0; fi
  left=$((BUDGET - SECONDS - GRACE))
  if [ "$left" -lt "$MIN_START" ]; then
    left=$((BUDGET - SECONDS))
    [ "$left" -lt 0 ] && left=0
    skip "$name" "budget: $left s of the ${BUDGET} s run left, under the $((MIN_START + GRACE)) s a step needs to start"
    return 0
  fi
  why=$(unmet "$needs")
  if [ -n "$why" ]; then skip "$name" "$why"; return 0; fi
  limit=$budget
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit} s; $((BUDGET - SECONDS)) s of the run left)"
  t0=$(now)
  ledger record "$OUT/steps.json" "$name" running --start "$t0" --limit "$limit" --log "$OUT/$name.log"
  timeout -s INT -k "$GRACE" "$limit" "$PY" benchmarks/steps_ledger.py exec -- "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  t1=$(now)
  case $rc in
    0) outcome=ok ;;
    124 | 137) outcome=timeout ;;
    *) outcome=failed ;;
  esac
  OUTCOME[$name]=$outcome
  ledger record "$OUT/steps.json" "$name" "$outcome" --start "$t0" --end "$t1" --limit "$limit" --code "$rc" \
    --log "$OUT/$name.log"
  if [ "$outcome" = ok ]; then tail -n 12 "$OUT/$name.log"; else tail -n 40 "$OUT/$name.log"; FAILED=1; fi
  pack
  echo "== $name: $outcome (exit $rc) after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s"
}

# --- per-mode arguments -------------------------------------------------------------------------
if [ "$MODE" = smoke ]; then
  SMOKE=(--smoke)
  # Out of place: the checkout's own extension (which the calling test process may have loaded)
  # stays as it is; the native steps use it.
  BUILD=(env ELP_FAST_BUILD_EXT=1 MAX_JOBS="$JOBS")
  BUILD_ARGS=(--build-lib "$OUT/native-build")
  WARM=(--quick --jobs 2)
  SAVED=(--smoke)
  E2E=(--smoke --checkpointing none --budget-s 1)
  ZERO=(--smoke --backbone tiny-wav2vec2 --zero-stages "2,3" --checkpointing all)
  E2E_COMPILE=(--smoke --checkpointing none --budget-s 1)
else
  SMOKE=()
  BUILD=(env ELP_FAST_BUILD_EXT=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="$JOBS")
  BUILD_ARGS=(--inplace)
  WARM=(--warm --jobs "$JOBS")
  SAVED=(--device cuda)
  E2E=(--budget-s 80)
  ZERO=(--backbone xls-r-1b --seconds 16 --micro-batch-size 8 --zero-stages "2,3" --checkpointing all --steps 3
    --warmup 2)
  E2E_COMPILE=(--backbones wavlm-large --checkpointing none)
fi

gpu_tests() {  # the pytest arguments: L path first, then the bottleneck grid, native, the rest
  local -a files=(tests/test_triton_layer_aggregate.py tests/test_triton_bottleneck_adapter.py)
  local f
  NATIVE_REQUIRED=0
  [ -z "$(unmet native)" ] && NATIVE_REQUIRED=1
  [ "$NATIVE_REQUIRED" = 1 ] && files+=(tests/test_native_ops.py)
  while read -r f; do
    case " ${files[*]} tests/test_native_ops.py " in *" $f "*) ;; *) files+=("$f") ;; esac
  done < <(grep -l "mark.gpu" tests/test_*.py 2>/dev/null)
  GPU_TESTS=(-q -p no:cacheprovider --durations=30 --junitxml="$OUT/gpu-tests.xml")
  [ "${HAVE_XDIST:-0}" = 1 ] && GPU_TESTS+=(-n "$JOBS")
  if [ "$MODE" = smoke ]; then
    # CPU sizes: the gpu tests are collected (and skip), with the meta-tests and opchecks of each file.
    GPU_TESTS+=(-k "gpu or perturbation or opcheck")
  else
    GPU_TESTS+=(-m gpu)
  fi
  GPU_TESTS+=("${files[@]}")
}

steps() {  # the run, in order
  step wheels "$(b 40 40)" wheels -- \
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --upgrade --target .site .whl/*.whl
  step preflight "$(b 10 30)" "" -- "$PY" benchmarks/steps_ledger.py preflight --out "$OUT" --mode "$MODE" \
    --timeout "$(($(b 10 30) - 2))"
  [ "$ACTION" = run ] && load_preflight "$OUT"
  # Every op on every backend that runs now, once at the realistic size, against the reference,
  # and one Base-sized training step: the Triton kernels need no build.
  # One tile candidate per kernel (ELP_FAST_TILES=first): correctness now, tile timing later.
  step first-contact "$(b 60 120)" device -- env ELP_FAST_TILES=first \
    "$PY" benchmarks/first_contact.py ${SMOKE[@]+"${SMOKE[@]}"} --out "$OUT/first-contact.jsonl"
  # The documented CUDA build (docs/design.md 4.4), in place: CPU + sm_90 kernels.
  step build "$(b 100 300)" torch,python_h,ninja,nvcc -- \
    "${BUILD[@]}" PATH="${PY_BIN:-}:$PATH" "$PY" setup.py -q build_ext "${BUILD_ARGS[@]}"
  step first-contact-native "$(b 20 60)" device,native -- env ELP_FAST_TILES=first \
    "$PY" benchmarks/first_contact.py ${SMOKE[@]+"${SMOKE[@]}"} --backends native --append \
    --out "$OUT/first-contact.jsonl"
  # Every Triton variant the tests and benchmarks launch, compiled into the cache on all cores,
  # so that the tests below spend their time testing.
  step warm "$(b 45 60)" device -- "$PY" benchmarks/compile_check.py "${WARM[@]}"
  gpu_tests
  step gpu-tests "$(b 110 240)" device -- \
    env ELP_FAST_REQUIRE_NATIVE="$NATIVE_REQUIRED" "$PY" -m pytest "${GPU_TESTS[@]}"
  # The op targets, roofline sizes first; rows are written as they come, so a step cut short
  # keeps what it measured.
  step bench-bottleneck "$(b 45 60)" device -- "$PY" benchmarks/bench_ops.py ${SMOKE[@]+"${SMOKE[@]}"} \
    --ops bottleneck_adapter --sizes roofline,realistic --out "$OUT/bench-bottleneck.csv"
  step bench-layers "$(b 30 60)" device -- "$PY" benchmarks/bench_ops.py ${SMOKE[@]+"${SMOKE[@]}"} \
    --ops layer_aggregate,weighted_layer_sum --sizes roofline,realistic --out "$OUT/bench-layers.csv"
  # What the compiled kernels keep for backward (the 2r + 8 target).
  step saved-bytes "$(b 20 60)" device -- "$PY" benchmarks/saved_bytes.py "${SAVED[@]}" --out "$OUT/saved-bytes.csv"
  # End to end, batch 8 x 16 s, bf16: WavLM-Large first (the target), then the other backbones
  # while its budget lasts; rows are written after every round.
  step bench-e2e "$(b 90 180)" device -- "$PY" benchmarks/bench_e2e.py "${E2E[@]}" \
    --variants elp-eager,elp-reference,elp-fused,weighted-sum,full,lora --out "$OUT/bench-e2e.csv"
  # ZeRO-2 against ZeRO-3 on the largest backbone, through the engine.
  step bench-zero "$(b 60 120)" device,deepspeed -- "$PY" benchmarks/bench_engine.py "${ZERO[@]}" \
    --out "$OUT/bench-zero.csv"
  # A task recipe: SIC from a tiny fixture, bf16, ZeRO-2, then eval from the saved adapters.
  step task-smoke "$(b 30 120)" device,deepspeed,soundfile,yaml -- \
    "$PY" benchmarks/task_smoke.py --out "$OUT/task-smoke"
  # torch.compile last (Inductor's compiles are the slowest steps): the E-adapter at the roofline
  # sizes against its compiled composition, then the compiled 24-layer model.
  step bench-ops-compile "$(b 45 120)" device -- "$PY" benchmarks/bench_ops.py ${SMOKE[@]+"${SMOKE[@]}"} \
    --compile --ops bottleneck_adapter --sizes roofline --out "$OUT/bench-ops-compile.csv"
  step bench-e2e-compile "$(b 90 180)" device -- "$PY" benchmarks/bench_e2e.py "${E2E_COMPILE[@]}" \
    --variants elp-eager,elp-fused,elp-compile --out "$OUT/bench-e2e-compile.csv"
  step report "$(b 15 60)" matplotlib -- "$PY" benchmarks/plot.py --results "$OUT" --out "$OUT"
}

ACTION_WANTED=$ACTION
ACTION=collect
steps
for name in "${!STEP_S[@]}"; do
  case " ${PLAN_NAMES[*]} " in
    *" $name "*) ;;
    *) echo "device_check.sh: ELP_DEVICE_STEP_S names no step '$name' (steps: ${PLAN_NAMES[*]})" >&2; exit 2 ;;
  esac
done
ACTION=$ACTION_WANTED

if [ "$ACTION" = plan ]; then
  tmp=$(mktemp -d)
  "$PY" benchmarks/steps_ledger.py preflight --quick --mode "$MODE" --out "$tmp" > /dev/null 2>&1 &&
    load_preflight "$tmp"
  rm -rf "$tmp"
  echo "device run ($MODE): ${BUDGET} s in all; no step starts with under $((MIN_START + GRACE)) s left;"
  echo "a step past its limit gets SIGINT, then SIGKILL ${GRACE} s later. Skips below: what a quick look"
  echo "at this machine predicts (modules found, not imported; prerequisite steps assumed to succeed)."
  printf '%3s  %-20s %7s  %-34s %s\n' "#" step budget needs ""
  steps
  exit 0
fi

mkdir -p "$OUT"
# This run's own outputs only (OUT may be a folder with other files in it).
rm -rf "$OUT/first-contact.jsonl" "$OUT/gpu-tests.xml" "$OUT/preflight.json" "$OUT/preflight.env" \
  "$OUT/native-build" "$OUT/task-smoke"
for name in "${PLAN_NAMES[@]}"; do rm -f "$OUT/$name.log" "$OUT/$name.csv"; done
specs=()
for i in "${!PLAN_NAMES[@]}"; do specs+=("${PLAN_NAMES[$i]}:${PLAN_BUDGETS[$i]}"); done
if ! ledger init "$OUT/steps.json" --mode "$MODE" --budget "$BUDGET" --min-start "$MIN_START" "${specs[@]}"; then
  echo "device_check.sh: cannot write $OUT/steps.json with $PY" >&2
  exit 2
fi
echo "device run ($MODE), ${BUDGET} s budget, results in $OUT"
steps
echo
ledger show "$OUT/steps.json"
echo "results in $OUT"
exit "$FAILED"
