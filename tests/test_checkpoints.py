# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Restoring damaged checkpoints: fall back to the newest readable one."""

import logging
import os
import shutil

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ptopk_patch_selection import checkpoints
from ptopk_patch_selection import errors


def _state(step):
  return {"step": jnp.asarray(step, jnp.int32),
          "params": {"kernel": jnp.full((32, 32), step, jnp.float32),
                     "bias": jnp.arange(8.0) + step}}


def _save(workdir, steps):
  manager = checkpoints.manager(workdir)
  for step in steps:
    manager.save(step, args=ocp.args.StandardSave(_state(step)))
  manager.wait_until_finished()


def _truncate(path):
  os.truncate(path, os.path.getsize(path) // 2)


def _garble(step_dir, kind):
  """Damages a saved step folder as a full disk, a cut copy or a bug would."""
  item = os.path.join(step_dir, "default")
  if kind == "truncated data files":
    for root, _, files in os.walk(item):
      if os.path.basename(root) == "d":  # TensorStore's data files
        for name in files:
          _truncate(os.path.join(root, name))
  elif kind == "cut _METADATA":
    _truncate(os.path.join(item, "_METADATA"))
  elif kind == "half-copied step":  # a copy stopped half-way, in walk order
    paths = sorted(os.path.join(root, name)
                   for root, _, files in os.walk(step_dir) for name in files)
    for path in paths[len(paths) // 2:]:
      os.remove(path)
  else:  # the item folder never arrived
    shutil.rmtree(item)


_KINDS = ["truncated data files", "cut _METADATA", "half-copied step",
          "no item folder"]


@pytest.mark.parametrize("kind", _KINDS)
def test_unreadable_newest_checkpoint_falls_back_to_the_previous(
    tmp_path, caplog, kind):
  workdir = str(tmp_path)
  _save(workdir, [1, 2])
  newest = os.path.join(workdir, "checkpoints", "2")
  _garble(newest, kind)

  # A reader (visualize) leaves the folder as it is.
  restored = checkpoints.restore_latest(checkpoints.manager(workdir),
                                        _state(0), set_aside_unreadable=False)
  np.testing.assert_array_equal(restored["params"]["kernel"], 1.0)
  assert os.path.isdir(newest)

  caplog.set_level(logging.WARNING)
  manager = checkpoints.manager(workdir)
  restored = checkpoints.restore_latest(manager, _state(0))
  assert int(restored["step"]) == 1
  np.testing.assert_array_equal(restored["params"]["bias"], np.arange(8.0) + 1)
  assert f"Checkpoint {newest} cannot be read" in caplog.text
  assert "using step 1 instead" in caplog.text
  # Set aside, so that training saves step 2 again.
  assert not os.path.exists(newest)
  (aside,) = os.listdir(tmp_path / checkpoints.UNREADABLE_FOLDER)
  assert aside.startswith("2-") and aside in caplog.text
  assert manager.all_steps() == [1]
  manager.save(2, args=ocp.args.StandardSave(_state(2)))
  manager.wait_until_finished()
  assert int(checkpoints.restore_latest(checkpoints.manager(workdir),
                                        _state(0))["step"]) == 2


def test_no_readable_checkpoint_stops_naming_the_folder(tmp_path):
  workdir = str(tmp_path)
  _save(workdir, [1, 2])
  directory = os.path.join(workdir, "checkpoints")
  _garble(os.path.join(directory, "2"), "cut _METADATA")
  _garble(os.path.join(directory, "1"), "truncated data files")
  with pytest.raises(errors.BadFileError) as error:
    checkpoints.restore_latest(checkpoints.manager(workdir), _state(0))
  message = str(error.value)
  assert message.startswith(f"No checkpoint in {directory} can be read")
  for step in ("1", "2"):
    assert os.path.join(directory, step) in message
  assert f"move {directory} away" in message
  assert sorted(os.listdir(directory)) == ["1", "2"]  # nothing moved


def test_no_checkpoint_returns_the_initial_state(tmp_path):
  state = _state(0)
  assert checkpoints.restore_latest(checkpoints.manager(str(tmp_path)),
                                    state) is state


def test_unretrieved_read_errors_of_an_unreadable_step_are_not_printed(
    tmp_path, caplog):
  """asyncio's late "never retrieved" reports name a step already reported."""
  workdir = str(tmp_path)
  _save(workdir, [1, 2])
  newest = os.path.join(workdir, "checkpoints", "2")
  _garble(newest, "truncated data files")
  checkpoints.restore_latest(checkpoints.manager(workdir), _state(0))

  caplog.set_level(logging.ERROR)
  asyncio_logger = logging.getLogger("asyncio")
  for folder in (newest, os.path.join(workdir, "elsewhere")):
    try:
      raise ValueError(f'OUT_OF_RANGE: Error reading "{folder}/default/d/0"')
    except ValueError:
      asyncio_logger.exception("Task exception was never retrieved")
  (printed,) = [record for record in caplog.records
                if record.name == "asyncio"]
  assert "elsewhere" in str(printed.exc_info[1])
