#!/usr/bin/env bash
# The project's two commands (see README.md):
#   ./run.sh                 set up, build the synthetic data, train and evaluate
#                            the default (WORKDIR=... to choose the workdir,
#                            SEED=... to change the config's seed)
#   ./run.sh test [ARGS]     set up, run the test suite (ARGS go to pytest)
#   ./run.sh bench [NAMES]   set up, run the benchmarks in benchmarks/ (all, or the named ones)
#   ./run.sh setup           set up only (the virtual environment)
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
  # Reinstall only when requirements*.txt or pyproject.toml changed.
  local stamp="$VENV/.installed-requirements"
  local want
  want=$(cat requirements.txt requirements-data.txt pyproject.toml |
    sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[run.sh] installing requirements.txt into $VENV (first run takes a minute or two)"
    # uv downloads, unpacks and byte-compiles in parallel: under a minute here
    # with nothing cached, against pip's 2, for the same versions. Without uv
    # (an index that serves no uv, say) pip installs the same files.
    if "$PYTHON" -m pip install -q --disable-pip-version-check uv; then
      # uv reads no pip configuration: pass on an index set for pip.
      if [ -n "${PIP_INDEX_URL:-}" ]; then
        export UV_INDEX_URL="${UV_INDEX_URL:-$PIP_INDEX_URL}"
      fi
      if [ -n "${PIP_EXTRA_INDEX_URL:-}" ]; then
        export UV_EXTRA_INDEX_URL="${UV_EXTRA_INDEX_URL:-$PIP_EXTRA_INDEX_URL}"
      fi
      "$VENV/bin/uv" pip install -q --python "$PYTHON" --compile-bytecode \
        -r requirements.txt
      "$VENV/bin/uv" pip install -q --python "$PYTHON" --no-deps \
        -r requirements-data.txt -e .
    else
      echo "[run.sh] could not install uv; installing with pip instead"
      "$PYTHON" -m pip install -q --disable-pip-version-check \
        -r requirements.txt
      "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps \
        -r requirements-data.txt -e .
    fi
    echo "$want" > "$stamp"
  fi
}

run_tests() {
  # One pytest-xdist worker per core (ARGS may override: -n 0 runs in this
  # process); modules marked xdist_group keep their shared fixture on one.
  # pytest exits 5 when it collects nothing; that is a failure here too.
  # --durations=15 lists the slowest; -m "not slow" leaves out the tests
  # marked slow, -m install runs the install test (left out otherwise).
  local rc=0
  "$PYTHON" -m pytest -n auto --dist loadgroup --durations=15 "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "[run.sh] pytest collected no tests: failing" >&2
  fi
  return "$rc"
}

run_benchmarks() {
  local names=("$@")
  if [ ${#names[@]} -eq 0 ]; then
    names=(topk_op model_speed step_cost reader_noise scorer_signal learning)
  fi
  for name in "${names[@]}"; do
    echo "[run.sh] benchmark $name"
    "$PYTHON" -m "benchmarks.$name"
    if [ "$name" = model_speed ]; then
      # The paper's speed plot (inference), at the sizes docs/benchmarks.md
      # shows.
      "$PYTHON" -m benchmarks.model_speed --mode=inference \
        --sizes=256,512,1024,2048,4096 --max_time_size=2048
      # The paper-scale Megapixel MNIST model's train step at 1500 px.
      "$PYTHON" -m benchmarks.model_speed --megapixel_mnist
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
  setup) ;;
  "") train_default ;;
  *) "$PYTHON" -m ptopk_patch_selection.main "$@" ;;
esac
