# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The texture-patch task, the reader's trainer, and tools/pretrain_reader.py
(which writes the embedded default's pretrained reader)."""

import os

import chex
import jax
from jax.sharding import Mesh
import numpy as np
import pytest

from configs import synthetic
from configs import test as test_config
from ptopk_patch_selection import errors
from ptopk_patch_selection import models
from ptopk_patch_selection import reader_training
from ptopk_patch_selection import train
from ptopk_patch_selection.datasets import texture_patches
from ptopk_patch_selection.models import patch_classifier
from ptopk_patch_selection.models import pretrained
from ptopk_patch_selection.tools import pretrain_reader

pytestmark = pytest.mark.usefixtures("fast_compile")

_TINY = pretrain_reader.Settings(steps=2, batch_size=4, test_patches=8)


def _texture(label: int, period: int = 4) -> np.ndarray:
  return texture_patches.texture(label, 24, period, np.zeros(2), 0, 255)


def _constant_along(pattern: np.ndarray, dy: int, dx: int) -> bool:
  """Whether shifting by (dy, dx) leaves the pattern unchanged."""
  return bool(np.all(pattern[2:-2, 2:-2] == np.roll(
      pattern, (-dy, -dx), (0, 1))[2:-2, 2:-2]))


def test_each_texture_class_has_its_orientation():
  names = texture_patches.CLASS_NAMES
  flat = _texture(names.index("flat"))
  assert flat.min() == flat.max() == 128
  # Stripes at angle a (image coordinates: x right, y down) are unchanged
  # along a and vary across it; shifts are (dy, dx).
  for name, along, across in (("stripes_0", (0, 1), (1, 0)),
                              ("stripes_90", (1, 0), (0, 1)),
                              ("stripes_45", (1, 1), (1, -1)),
                              ("stripes_135", (1, -1), (1, 1))):
    pattern = _texture(names.index(name))
    assert _constant_along(pattern, *along), name
    assert not _constant_along(pattern, *across), name
  checkerboard = _texture(names.index("checkerboard"))
  diamonds = _texture(names.index("diamonds"))
  for pattern in (checkerboard, diamonds):
    assert not any(_constant_along(pattern, *shift) for shift in
                   ((0, 1), (1, 0), (1, 1), (1, -1)))
  assert _constant_along(checkerboard, 4, 0)  # one period along the axes
  dots = _texture(names.index("dots"), period=8)
  assert 0.2 < np.mean(dots == 0) < 0.5  # small dark dots on light
  textures = [_texture(label).tobytes() for label in range(len(names))]
  assert len(set(textures)) == len(names)


def test_texture_patches_are_balanced_and_reproducible():
  patches, labels = texture_patches.batch(3, 0, range(16), 32)
  assert patches.shape == (16, 32, 32, 3) and patches.dtype == np.uint8
  np.testing.assert_array_equal(labels, np.arange(16) % 8)
  again, _ = texture_patches.batch(3, 0, range(16), 32)
  np.testing.assert_array_equal(patches, again)
  other_split, _ = texture_patches.batch(3, 1, range(16), 32)
  assert not np.array_equal(patches, other_split)


def test_reader_training_learns_a_separable_task():
  """Bright patches vs dark ones: the loss falls and the reader is right."""
  rng = np.random.default_rng(0)
  labels = np.arange(32) % 2
  patches = (rng.uniform(0, 0.4, (32, 16, 16, 3)) +
             0.5 * labels[:, None, None, None]).astype(np.float32)
  training = reader_training.ReaderTraining(
      patch_classifier.create("ats_traffic", 2), learning_rate=1e-2,
      weight_decay=0.0, seed=0, example_patches=patches[:2])
  losses = [training.step(patches, labels) for _ in range(30)]
  assert losses[-1] < 0.5 * losses[0]
  assert training.accuracy(patches, labels, batch_statistics=True) == 1.0


def test_pretrained_reader_loads_into_patchnet(tmp_path):
  """The tool's file is the bare feature network, as training loads it."""
  config = test_config.get_config()
  output = str(tmp_path / "reader.npz")
  config.model.pretrained_checkpoint = output
  logs = []
  path = pretrain_reader.ensure_pretrained(config.model, settings=_TINY,
                                           log=logs.append)
  assert path == output and os.path.exists(output)
  assert any("held-out accuracy" in line for line in logs)
  written = pretrained.read_checkpoint(output)
  assert all(name.split("/")[0] in ("params", "batch_stats")
             and "head" not in name for name in written)
  trainer = train.Trainer(config, config.dataset.num_classes,
                          Mesh(np.array(jax.devices()), ("data",)))
  state = trainer.create_state()
  loaded = pretrained.flatten({"params": state.params["feature_network"],
                               "batch_stats":
                                   state.batch_stats["feature_network"]})
  chex.assert_trees_all_equal(loaded, written)
  # A second call keeps the file and trains nothing.
  before = os.stat(output).st_mtime_ns
  logs.clear()
  pretrain_reader.ensure_pretrained(config.model, settings=_TINY,
                                    log=logs.append)
  assert os.stat(output).st_mtime_ns == before
  assert len(logs) == 1 and "found the pretrained reader" in logs[0]


def test_pretraining_writes_nothing_when_the_loss_is_not_finite(tmp_path):
  model_config = test_config.get_config().model
  output = str(tmp_path / "reader.npz")
  settings = pretrain_reader.Settings(steps=3, batch_size=4, test_patches=4,
                                      learning_rate=float("nan"))
  with pytest.raises(FloatingPointError, match="nothing was written"):
    pretrain_reader.ensure_pretrained(model_config, output,
                                      settings=settings, log=lambda _: None)
  assert os.listdir(tmp_path) == []


def test_a_stopped_write_leaves_no_checkpoint(tmp_path, monkeypatch):
  output = str(tmp_path / "reader.npz")

  def save_half_and_stop(path, variables):
    del variables
    with open(path, "wb") as f:
      f.write(b"PK\x03\x04 half")
    raise KeyboardInterrupt

  monkeypatch.setattr(pretrained, "save_npz", save_half_and_stop)
  with pytest.raises(KeyboardInterrupt):
    pretrain_reader.write_atomically(output, {"params": {}})
  assert os.listdir(tmp_path) == []


def test_missing_reader_error_names_the_tool(tmp_path):
  config = test_config.get_config()
  config.model.pretrained_checkpoint = str(tmp_path / "absent.npz")
  with pytest.raises(errors.MissingFileError) as error:
    models.load_pretrained_feature_network({"params": {}}, config.model)
  message = str(error.value)
  assert str(tmp_path / "absent.npz") in message
  assert "python -m ptopk_patch_selection.tools.pretrain_reader" in message


def test_relative_reader_path_is_relative_to_the_root(tmp_path, monkeypatch):
  monkeypatch.setenv("PTOPK_ROOT", str(tmp_path))
  model_config = test_config.get_config().model
  model_config.pretrained_checkpoint = "pretrained/reader.npz"
  path = pretrain_reader.ensure_pretrained(model_config, settings=_TINY,
                                           log=lambda _: None)
  assert path == str(tmp_path / "pretrained" / "reader.npz")
  assert os.path.exists(path)


def test_the_default_starts_pretrained_and_scratch_does_not():
  default, scratch = synthetic.get_config(), synthetic.get_config("scratch")
  assert default.model.pretrained_checkpoint == synthetic.PRETRAINED_READER
  assert scratch.model.pretrained_checkpoint == ""
  different = {key for key in default if default[key] != scratch[key]}
  assert different == {"model"}
  with pytest.raises(ValueError, match="scratch"):
    synthetic.get_config("pretrained")
