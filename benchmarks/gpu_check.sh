#!/usr/bin/env bash
# The one prepared GPU check: run it whenever a GPU machine is at hand (the project's device machine: one H200 +
# 16-core Xeon, no network, Python 3.12 with torch/torchvision/onnxruntime but no optuna, SQLAlchemy, alembic,
# colorlog, Mako or torch-pruning).
#
#   1. here, with the package registry:   bash benchmarks/gpu_check.sh --fetch     (wheels → .whl/, git-ignored)
#   2. there, from the repository root:   bash benchmarks/gpu_check.sh             (carry .whl; results → $OUT)
#   3. there, a second call if time is left: bash benchmarks/gpu_check.sh --workers  (1 vs 4 workers, below)
#
# Step 2 installs the carried wheels and the project (outside the checkout: an uninstalled checkout cannot import
# autocompress.search_spaces), then, within about 8 minutes:
#   - the GPU and CPU it runs on (nvidia-smi, lscpu flags);
#   - tests/test_device.py, test_accuracy.py and test_store.py on that machine (CUDA logits and bf16 autocast
#     training, teacher logits filled on the GPU, scoring threads, image stores);
#   - the demo search with --device cuda, 12 trials (wall time, chosen model, per-stage times in trials.csv);
#   - benchmarks/scoring_threads.py: accuracy scoring on every core vs one thread, side by side.
# Everything it writes lies in $OUT (default /tmp/gpu_check): gpu_check.log, tests.log, demo.log, metrics.json,
# trials.csv, scoring_threads.md. Without CUDA it says so and stops after the tests: no GPU figure is ever made up.
#
# `--workers` (within about 7 minutes) runs instead the same demo study, $TRIALS trials (default 12), twice side by
# side in time: one `search --device cuda` process, then the host split as the README says: a `measure-worker` pinned
# to the last quarter of the cores and `search --build-only --workers 4 --device cuda` pinned to the rest (the core
# guard locks per core, so the build workers never wait behind a timing). workers.log has both wall times and
# choices; DEVICE=cpu runs the same commands without a GPU (to check the script, not for figures).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WHEELS="$REPO/.whl"

if [ "${1:-}" = "--fetch" ]; then
  mkdir -p "$WHEELS"
  # The versions this project is tested with (pip show here); --no-deps: each missing dependency is named.
  for spec in optuna==5.1.0 SQLAlchemy==2.1.9 alembic==1.20.1 colorlog==6.12.0 Mako==1.4.3 torch-pruning==1.6.1 \
              greenlet; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$WHEELS" "$spec" || { echo "gpu_check: could not fetch $spec" >&2; exit 1; }
  done
  ls -la "$WHEELS"
  echo "now run on the GPU machine: bash benchmarks/gpu_check.sh (carry .whl)"
  exit 0
fi

OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
say() { echo "== $*" | tee -a "$LOG"; }
export PYTHONUNBUFFERED=1

say "machine"
{ nvidia-smi -L 2>&1 || echo "no nvidia-smi"; lscpu | grep -E "Model name|^CPU\(s\)"; \
  grep -o -w -E "avx512_vnni|amx_int8|avx512_bf16" /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } >>"$LOG" 2>&1

say "install (carried wheels, then the project outside the checkout)"
SITE=/tmp/gpu_check_site
rm -rf "$SITE" && mkdir -p "$SITE"
if [ -d "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl >>"$LOG" 2>&1 || { say "wheel install failed"; exit 1; }
fi
python3 -m pip install -q --no-deps --no-build-isolation --target "$SITE" "$REPO" >>"$LOG" 2>&1 ||
  { say "project install failed"; exit 1; }
export PYTHONPATH="$SITE"
cd /tmp  # never the checkout: the installed package is the one under test
python3 -c "import autocompress, optuna, torch_pruning, torch; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), 'optuna', optuna.__version__)" >>"$LOG" 2>&1 || { say "imports failed"; exit 1; }
tail -1 "$LOG"

if [ "${1:-}" = "--workers" ]; then
  DEVICE=${DEVICE:-cuda}
  TRIALS=${TRIALS:-12}
  if [ "$DEVICE" = cuda ] && ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    say "no CUDA device here: no GPU figures taken"
    exit 0
  fi
  cores=$(nproc)
  timing=$(( cores >= 8 ? cores / 4 : 1 ))
  build_cores="0-$(( cores - timing - 1 ))"
  timing_cores="$(( cores - timing ))-$(( cores - 1 ))"
  common=(--device "$DEVICE" --trials "$TRIALS" --no-explain --output "$OUT/workers")
  rm -rf "$OUT/workers" && mkdir -p "$OUT/workers"
  if [ -d "$REPO/results/_cache" ]; then  # the demo teacher, trained once (carry results/_cache)
    cp -r "$REPO/results/_cache" "$OUT/workers/_cache"
  else
    say "no cached demo teacher (results/_cache): the 1-worker time includes training it"
  fi
  say "1 worker: search $DEVICE, $TRIALS trials, every core"
  started=$(date +%s)
  timeout 200 python3 -m autocompress search "${common[@]}" --study-name w1 >"$OUT/w1.log" 2>&1
  echo "1 worker: exit $? in $(( $(date +%s) - started )) s: $(grep -E '^(chosen|over budget)' "$OUT/w1.log")" |
    tee -a "$LOG" "$OUT/workers.log"
  say "measure-worker on cores $timing_cores + search --build-only --workers 4 on cores $build_cores"
  started=$(date +%s)
  taskset -c "$timing_cores" timeout 260 python3 -m autocompress measure-worker "${common[@]}" --study-name w4 \
    >"$OUT/w4_measure.log" 2>&1 &
  target=$!
  # The measure worker sets the study up (its CPU's budget) before any build worker may join.
  timeout 120 python3 -c "
import sys, time, optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
while True:
    try:
        if 'identity' in optuna.load_study(study_name='w4', storage='sqlite:///$OUT/workers/w4/study.db').user_attrs:
            break
    except Exception:
        pass
    time.sleep(0.5)
"
  taskset -c "$build_cores" timeout 240 python3 -m autocompress search "${common[@]}" --study-name w4 --build-only \
    --workers 4 >"$OUT/w4_build.log" 2>&1
  build_rc=$?
  wait "$target"
  echo "4 build workers + measure worker: exit $build_rc/$? in $(( $(date +%s) - started )) s:" \
    "$(grep -E '^(chosen|over budget)' "$OUT/w4_measure.log")" | tee -a "$LOG" "$OUT/workers.log"
  grep -h -E "core guard|trials ran in this process|^study:" "$OUT"/w1.log "$OUT"/w4_*.log >>"$OUT/workers.log"
  rm -rf "$OUT/workers"
  exit 0
fi

say "tests: device, scoring threads, image stores"
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" "$REPO/tests/test_device.py" \
  "$REPO/tests/test_accuracy.py" "$REPO/tests/test_store.py" >"$OUT/tests.log" 2>&1
echo "tests exit $? ($(tail -1 "$OUT/tests.log"))" | tee -a "$LOG"

if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  say "no CUDA device here: no GPU figures taken"
  exit 0
fi

say "demo search on cuda (12 trials)"
started=$(date +%s)
timeout 330 python3 -m autocompress search --device cuda --trials 12 --no-explain --output "$OUT/study" \
  --study-name gpu-demo >"$OUT/demo.log" 2>&1
echo "demo exit $? in $(( $(date +%s) - started )) s: $(grep -E '^(chosen|over budget)' "$OUT/demo.log")" | tee -a "$LOG"
cp "$OUT/study/gpu-demo/chosen/metrics.json" "$OUT/metrics.json" 2>/dev/null
cp "$OUT/study/gpu-demo/trials.csv" "$OUT/trials.csv" 2>/dev/null
rm -rf "$OUT/study"  # only files two folders down come back; the copies above are what matters

say "scoring threads (every core vs one thread)"
timeout 120 python3 "$REPO/benchmarks/scoring_threads.py" --rounds 3 --output "$OUT/scoring_threads.md" >>"$LOG" 2>&1
echo "scoring exit $?" | tee -a "$LOG"
