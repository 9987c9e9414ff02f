#!/usr/bin/env bash
# The accelerator check (benchmarks/accelerator.py), from a clean checkout:
#   benchmarks/accelerator.sh [--cuda12|--cuda13|--tpu] [ARGS]
#       makes .venv-accelerator with run.sh's requirements, jax pinned to the
#       version the test suite ran with (requirements.txt's jax>=), and that
#       jax version's plugin for the accelerator; then runs every step.
#   benchmarks/accelerator.sh --system [ARGS]
#       no install: runs with `python3` as it is (an image that already has
#       jax for its accelerator and no package index).
#   benchmarks/accelerator.sh --dry-run [ARGS]
#       tiny sizes with run.sh's CPU environment ($VENV, default .venv):
#       checks every command in a couple of minutes.
# ARGS go to benchmarks.accelerator (--out=DIR, --budget_s=..., --steps=...).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=cuda12
case "${1:-}" in
  --cuda12|--cuda13|--tpu|--system|--dry-run) mode="${1#--}"; shift ;;
esac
jax_version=$(sed -n 's/^jax>=\([0-9.]*\).*/\1/p' requirements.txt)

case "$mode" in
  system)
    python=python3 ;;
  dry-run)
    ./run.sh setup
    python="${VENV:-.venv}/bin/python"
    # It checks the commands, not their speed: cheap XLA compiles.
    export JAX_DISABLE_MOST_OPTIMIZATIONS=1
    set -- --dry_run --budget_s=1800 "$@" ;;
  *)
    export VENV="${VENV:-.venv-accelerator}"
    constraints=$(mktemp)
    printf 'jax==%s\njaxlib==%s\n' "$jax_version" "$jax_version" > "$constraints"
    # run.sh's installers honour these: the same jax as the CPU runs.
    export UV_CONSTRAINT="$constraints" PIP_CONSTRAINT="$constraints"
    ./run.sh setup
    python="$VENV/bin/python"
    extra="$mode"
    if [ "$mode" = tpu ]; then extra=tpu; fi
    echo "[accelerator.sh] installing jax[$extra]==$jax_version"
    if [ -x "$VENV/bin/uv" ]; then
      "$VENV/bin/uv" pip install -q --python "$python" "jax[$extra]==$jax_version"
    else
      "$python" -m pip install -q "jax[$extra]==$jax_version"
    fi ;;
esac
echo "[accelerator.sh] $("$python" -c 'import jax; print("jax", jax.__version__, jax.devices())')"
exec "$python" -m benchmarks.accelerator "$@"
