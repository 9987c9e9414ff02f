# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The command-line tools end a user's error in a few lines, no traceback."""

import os
import subprocess
import sys

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from ptopk_patch_selection import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *flags):
  """(exit status, stderr) of `python -m ptopk_patch_selection.<module>`."""
  env = dict(os.environ, PYTHONPATH=REPO,
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  result = subprocess.run(
      [sys.executable, "-m", f"ptopk_patch_selection.{module}", *flags],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  return result.returncode, result.stderr


def _assert_short_error(status, stderr, *parts):
  assert status == 1
  assert "Traceback" not in stderr
  assert len(stderr.splitlines()) <= 6, stderr
  message = stderr[stderr.index("Error: "):]
  for part in parts:
    assert part in message


def _train(workdir, *flags):
  return _run("main", "--config=configs/test.py", f"--workdir={workdir}",
              *flags)


@pytest.mark.parametrize("flag, parts", [
    ("--config.sigma=-1", ["Invalid config: sigma=-1.0 must be >= 0."]),
    ("--config.model.aggregator=attention",
     ["model.aggregator='attention' is not one of", "'transformer'"]),
    # ml_collections' message, with its newline as a newline.
    ("--config.model.patch_sise=8",
     ["unknown config field 'patch_sise'\nDid you mean \"patch_size\""]),
])
def test_config_error(tmp_path, flag, parts):
  _assert_short_error(*_train(tmp_path, flag), *parts)


def test_config_file_that_does_not_load(tmp_path):
  status, stderr = _run("main", "--config=configs/nowhere.py",
                        f"--workdir={tmp_path}")
  _assert_short_error(status, stderr,
                      f"config file {REPO}/configs/nowhere.py (--config) "
                      "does not load")


def test_verbosity_1_shows_the_traceback(tmp_path):
  status, stderr = _train(tmp_path, "--config.sigma=-1", "--verbosity=1")
  assert status == 1 and "Traceback" in stderr
  assert "Error: Invalid config: sigma=-1.0 must be >= 0." in stderr
  # Flags after a failing --config flag are not parsed.
  misspelt = ["--config=configs/test.py", "--config.model.patch_sise=8",
              f"--workdir={tmp_path}"]
  status, stderr = _run("main", *misspelt, "--verbosity=1")
  assert "Traceback" not in stderr
  assert "(--verbosity=1 before --config shows the traceback)" in stderr
  status, stderr = _run("main", "--verbosity=1", *misspelt)
  assert status == 1 and "Traceback" in stderr


def test_no_readable_checkpoint_stops_the_run(tiny_traffic_data_dir,
                                              tmp_path):
  manager = checkpoints.manager(tmp_path)
  manager.save(2, args=ocp.args.StandardSave({"step": jnp.zeros(())}))
  manager.wait_until_finished()
  directory = tmp_path / "checkpoints"
  metadata = directory / "2" / "default" / "_METADATA"
  os.truncate(metadata, os.path.getsize(metadata) // 2)
  status, stderr = _train(tmp_path,
                          f"--config.dataset.data_dir={tiny_traffic_data_dir}")
  _assert_short_error(status, stderr,
                      f"No checkpoint in {directory} can be read",
                      f"{directory / '2'}: JSONDecodeError",
                      f"To train from step 0 instead, move {directory} away.")
  assert os.listdir(directory) == ["2"]


def test_visualize_outside_a_workdir(tmp_path):
  _assert_short_error(*_run("visualize", f"--workdir={tmp_path}"),
                      f"{tmp_path / 'config.json'} does not exist")


def test_build_without_the_download(tmp_path):
  _assert_short_error(
      *_run("tools.build_dataset", "--dataset=billiard",
            f"--data_dir={tmp_path / 'tfds'}",
            f"--manual_dir={tmp_path / 'downloads'}"),
      f"{tmp_path / 'downloads' / 'billiard'} is missing or empty",
      "http://storage.googleapis.com/")
