# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""What the command-line programs print: progress, evaluations, the summary.

Training writes its metrics with CLU; these lines are for a person watching a
terminal.
"""

import os
import time

from absl import flags
from absl import logging
import numpy as np

from ptopk_patch_selection import checkpoints
from ptopk_patch_selection import workdir_files


class ProgressLine:
  """A one-line progress display: step, loss, accuracy, sigma, speed, ETA."""

  def __init__(self, total_steps: int):
    self._total = total_steps
    self._start = self._start_step = None

  def update(self, step: int, values: dict[str, float]) -> str:
    now = time.monotonic()
    if self._start is None:  # the first step includes compilation
      self._start, self._start_step = now, step
    done = step - self._start_step
    rate = done / max(now - self._start, 1e-9)
    remaining = (self._total - step) / rate if rate > 0 else float("nan")
    parts = [f"step {step}/{self._total}"]
    parts += [f"{name} {value:.4g}" for name, value in values.items()]
    if done > 0:
      parts += [f"{rate:.2f} steps/s", f"ETA {_format_seconds(remaining)}"]
    return " | ".join(parts)


def _format_seconds(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  minutes, seconds = divmod(int(seconds), 60)
  return f"{minutes}m{seconds:02d}s"


def evaluation_line(step: int, results: dict[str, float]) -> str:
  """One evaluation's accuracy, majority-class rate and coverage."""
  return f"evaluation at step {step}: " + ", ".join(
      f"{name} {results[name]:.4f}" for name in
      ("accuracy", "majority_rate", "coverage") if name in results)


def quiet_library_logs() -> None:
  """Logs at WARNING unless --verbosity was given: no Orbax/CLU INFO lines.

  For command-line programs, after absl has parsed the flags.
  """
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def describe_results(results: dict[str, float], workdir: str) -> str:
  """The final evaluation and where the run's outputs are, for a terminal."""
  workdir = os.path.abspath(workdir)
  lines = [f"Final evaluation on {results.get('examples', 0)} examples:",
           f"  accuracy {results.get('accuracy', float('nan')):.4f} "
           f"(majority-class rate {results.get('majority_rate', 0):.4f})",
           f"  loss {results.get('loss', float('nan')):.4f}"]
  if "coverage" in results:
    lines.append(f"  covered-object fraction {results['coverage']:.4f} "
                 "(test images whose deciding object lies in a selected "
                 "patch)")
  checkpoint_dir = os.path.join(workdir, checkpoints.FOLDER)
  steps = sorted(int(name) for name in os.listdir(checkpoint_dir)
                 if name.isdigit()) if os.path.isdir(checkpoint_dir) else []
  pictures = os.path.join(workdir, workdir_files.PICTURES_FOLDER)
  latest = sorted(os.listdir(pictures)) if os.path.isdir(pictures) else []
  lines += [f"TensorBoard logs: {workdir}  (.venv/bin/tensorboard --logdir "
            f"{workdir})",
            f"Notebook: PTOPK_WORKDIR={workdir} .venv/bin/jupyter execute "
            "notebooks/metrics.ipynb --output=metrics_run",
            "Checkpoint: " + (os.path.join(checkpoint_dir, str(steps[-1]))
                              if steps else "none")]
  if latest:
    lines.append(f"Patch pictures: {os.path.join(pictures, latest[-1])}")
  return "\n".join(lines)
