#!/usr/bin/env bash
# The project's two commands (see README.md):
#   ./run.sh                 set up, build the synthetic data, train and evaluate
#                            the default (WORKDIR=... to choose the workdir,
#                            SEED=... to change the config's seed)
#   ./run.sh test [ARGS]     set up, run the test suite (ARGS go to pytest)
#   ./run.sh bench [NAMES]   set up, run the benchmarks in benchmarks/ (all, or the named ones)
# Any other arguments are passed to `python -m ptopk_patch_selection.main`.
set -euo pipefail
cd "$(dirname "$0")"

VENV="${VENV:-.venv}"
PYTHON="$VENV/bin/python"

setup() {
  if [ ! -x "$PYTHON" ]; then
    echo "[run.sh] creating virtual environment in $VENV"
    python3 -m venv "$VENV"
  fi
  # Reinstall only when requirements.txt or pyproject.toml changed.
  local stamp="$VENV/.installed-requirements"
  local want
  want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[run.sh] installing requirements.txt into $VENV (first run takes a few minutes)"
    # pip byte-compiles on one core; compileall uses them all (~15 s less on
    # 2 cores). A file that does not compile is compiled, or not, on import.
    "$PYTHON" -m pip install -q --disable-pip-version-check --no-compile \
      -r requirements.txt
    "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps -e .
    local packages
    packages=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    "$PYTHON" -m compileall -q -j 0 "$packages" > /dev/null || true
    echo "$want" > "$stamp"
  fi
}

run_tests() {
  # pytest exits 5 when it collects nothing; that is a failure here too.
  local rc=0
  "$PYTHON" -m pytest "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "[run.sh] pytest collected no tests: failing" >&2
  fi
  return "$rc"
}

run_benchmarks() {
  local names=("$@")
  if [ ${#names[@]} -eq 0 ]; then
    names=(topk_op model_speed reader_noise scorer_signal learning)
  fi
  for name in "${names[@]}"; do
    echo "[run.sh] benchmark $name"
    "$PYTHON" -m "benchmarks.$name"
    if [ "$name" = model_speed ]; then
      # The paper's speed plot (inference), at the sizes the README shows.
      "$PYTHON" -m benchmarks.model_speed --mode=inference \
        --sizes=256,512,1024,2048,4096 --max_time_size=2048
    fi
  done
  "$PYTHON" -m benchmarks.update_readme
}

train_default() {
  # The embedded default: build synthetic_traffic_signs/textures and pretrain
  # its reader on texture patches if missing, train configs/synthetic.py,
  # evaluate, say where everything is.
  local workdir="${WORKDIR:-data/workdirs/synthetic}"
  "$PYTHON" -m ptopk_patch_selection.tools.build_dataset \
    --dataset=synthetic_traffic_signs/textures --data_dir=data/tfds \
    --noread_epoch
  "$PYTHON" -m ptopk_patch_selection.tools.pretrain_reader \
    --config=configs/synthetic.py
  local seed=()
  if [ -n "${SEED:-}" ]; then seed=(--config.seed="$SEED"); fi
  "$PYTHON" -m ptopk_patch_selection.main --config=configs/synthetic.py \
    ${seed[@]+"${seed[@]}"} --workdir="$workdir" --verbosity=-1
}

setup
case "${1:-}" in
  test) shift; run_tests "$@" ;;
  bench) shift; run_benchmarks "$@" ;;
  "") train_default ;;
  *) "$PYTHON" -m ptopk_patch_selection.main "$@" ;;
esac
