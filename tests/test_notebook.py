# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Runs notebooks/metrics.ipynb top to bottom on a small logged workdir."""

import os
import pathlib

import nbclient
import nbformat
import pytest

import test_metrics_io

NOTEBOOK = pathlib.Path(__file__).parents[1] / "notebooks" / "metrics.ipynb"


def _execute(workdir, cwd):
  """Executes the notebook with PTOPK_WORKDIR=workdir; returns it run."""
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  # The "python3" kernel spec of the virtualenv; jupyter_client starts its
  # "python" as sys.executable, so the kernel runs in this interpreter.
  client = nbclient.NotebookClient(
      notebook, timeout=120, kernel_name="python3",
      resources={"metadata": {"path": str(cwd)}})
  client.execute(env=os.environ | {"PTOPK_WORKDIR": str(workdir)})
  return notebook


def _text_outputs(notebook):
  return "".join(output.get("text", "") for cell in notebook.cells
                 if cell.cell_type == "code" for output in cell.outputs)


@pytest.mark.slow
def test_notebook_runs_on_a_logged_workdir(tmp_path):
  """Every cell runs (a failing cell raises); plots and pictures appear."""
  workdir = tmp_path / "workdir"
  test_metrics_io.write_workdir(workdir)
  notebook = _execute(workdir, tmp_path)
  outputs = [output for cell in notebook.cells if cell.cell_type == "code"
             for output in cell.outputs]
  pictures = [output for output in outputs
              if "image/png" in output.get("data", {})]
  # The curves (loss, accuracy, sigma) and the two logged images.
  assert len(pictures) == 3
  assert "Other metrics: ['steps_per_sec']" in _text_outputs(notebook)
