# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Shared helpers of the benchmark scripts: timing, memory, result files."""

import json
import os
import platform
import statistics
import time

import jax
import ml_collections

# $PTOPK_BENCHMARK_RESULTS redirects every table (benchmarks/accelerator.py
# keeps an accelerator's tables apart from the CPU ones).
RESULTS_DIR = os.environ.get("PTOPK_BENCHMARK_RESULTS") or os.path.join(
    os.path.dirname(__file__), "results")


def compile_and_time(fn, *args, repeats: int = 3):
  """Compiles jit(fn) and times it.

  Returns:
    (median seconds over `repeats` runs after compilation, temporary bytes
    from the compiled program's memory analysis).
  """
  compiled = jax.jit(fn).lower(*args).compile()
  temp_bytes = compiled.memory_analysis().temp_size_in_bytes
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times), temp_bytes


def machine_description() -> dict[str, str]:
  """Where the numbers were measured."""
  device = jax.devices()[0]
  return {"backend": jax.default_backend(), "device": device.device_kind,
          "cpu_count": str(os.cpu_count()), "machine": platform.machine(),
          "jax": jax.__version__}


def markdown_table(header: list[str], rows: list[list]) -> str:
  """A Markdown table of rows (floats shown with 3 significant digits)."""
  def cell(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)
  lines = ["| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def read_results(name: str) -> dict:
  """results/<name>.json as written by `write_results`, or {} if absent."""
  path = os.path.join(RESULTS_DIR, f"{name}.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def write_results(name: str, results: dict, table: str,
                  results_dir: str = RESULTS_DIR) -> str:
  """Writes <results_dir>/<name>.json and .md; returns the json path."""
  os.makedirs(results_dir, exist_ok=True)
  path = os.path.join(results_dir, f"{name}.json")
  with open(path, "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(results_dir, f"{name}.md"), "w") as f:
    f.write(table + "\n")
  return path


def override(config: ml_collections.ConfigDict,
             pairs) -> ml_collections.ConfigDict:
  """A copy of `config` with (dotted field, value) pairs set."""
  config = config.copy_and_resolve_references()
  for field, value in pairs:
    parent, _, last = field.rpartition(".")
    get_field(config, parent)[last] = value
  return config


def get_field(config: ml_collections.ConfigDict, field: str):
  """config's dotted `field` ("model.k"; "" is config itself)."""
  for part in filter(None, field.split(".")):
    config = config[part]
  return config
