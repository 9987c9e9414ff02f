# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""benchmarks/accelerator.sh --dry-run: every step of the accelerator check
runs on a CPU with tiny sizes, so a GPU run cannot fail on a typo."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_dry_run_runs_every_step_and_records_each(tmp_path):
  env = dict(os.environ,
             VENV=os.path.dirname(os.path.dirname(sys.executable)))
  process = subprocess.Popen(
      ["bash", "benchmarks/accelerator.sh", "--dry-run", f"--out={tmp_path}"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)
  try:
    output, _ = process.communicate(timeout=900)
  finally:
    process.kill()
    process.wait()
  assert process.returncode == 0, output[-3000:]
  with open(tmp_path / "accelerator_cpu.json") as f:
    results = json.load(f)
  assert results["dry_run"] and results["devices"]["backend"] == "cpu"
  assert list(results["steps"]) == ["devices", "tests", "topk_op", "speed",
                                    "default", "mnist"]
  for name, step in results["steps"].items():
    assert step["returncode"] == 0 and not step["timed_out"], name
  # The benchmarks' tables land beside the results, not over the CPU ones.
  assert {"topk_op", "model_speed", "model_speed_inference"} <= set(
      results["tables"])
  assert (tmp_path / "accelerator_tables" / "topk_op.md").exists()
  assert "Final evaluation" in results["steps"]["mnist"]["output_tail"]
