# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""With a reader that reads, the training loss's score gradient finds the
deciding cell (benchmarks/scorer_signal.py on tiny scenes)."""

import numpy as np
import pytest

from benchmarks import common
from benchmarks import scorer_signal
from configs import synthetic
from configs import test as test_config
from ptopk_patch_selection.datasets import traffic_scene


_SIDE, _SIGN = 128, 24  # image and sign sizes in pixels


def _scenes(num: int, seed: int) -> dict:
  """Noise images with a coded square (label 1-3) or none (0) and a flat
  look-alike, in the benchmark's batch format."""
  rng = np.random.default_rng(seed)
  images = rng.integers(60, 200, (num, _SIDE, _SIDE, 3)).astype(np.uint8)
  labels = np.arange(num) % 4
  boxes = np.zeros((num, 2, 4), np.float32)
  for i, label in enumerate(labels):
    corners = rng.choice(np.arange(8, _SIDE - _SIGN - 8, _SIGN), (2, 2),
                         replace=False)
    for j, (y, x) in enumerate(corners):
      content = str(traffic_scene.TARGET_NUMBERS[label - 1]) if (
          j == 0 and label) else ""
      code = traffic_scene.texture_code(content, _SIGN, 10, 245)
      images[i, y:y + _SIGN, x:x + _SIGN] = code[..., None]
      boxes[i, j] = np.array([y, x, y + _SIGN, x + _SIGN]) / _SIDE
  return {"image": images, "label": labels, "boxes": boxes,
          "box_mask": np.ones((num, 2), bool),
          "is_target": np.stack([labels > 0, np.zeros(num, bool)], -1)}


def _config(train_patches: str, entropy_regularizer: float):
  """configs/test.py's sizes with the default's selection settings."""
  config = test_config.get_config()
  defaults = synthetic.get_config()
  config.model.update(patch_grid="scorer", scorer_padding="valid",
                      patch_padding="edge", train_patches=train_patches,
                      k=2, patch_size=48)
  config.dataset.max_objects = 2
  config.update(sigma=defaults.sigma, learning_rate=3e-3, batch_size=16,
                eval_batch_size=16, entropy_regularizer=entropy_regularizer)
  return common.override(config, ())


# Under pytest-xdist the module stays on one worker: one pretrained reader.
pytestmark = [pytest.mark.xdist_group("scorer_signal"),
              pytest.mark.usefixtures("fast_compile")]


@pytest.fixture(scope="module")
def reader_that_reads():
  """(scenes, test scenes, PatchNet variables whose reader reads them)."""
  config = _config("soft", 0.0)
  scenes, test_scenes = _scenes(256, 0), _scenes(64, 1)
  variables, with_sign, without_sign = scorer_signal.pretrain_reader(
      config, scenes, test_scenes, steps=40)
  assert with_sign > 0.9 and without_sign < 0.6  # the reader reads
  return scenes, test_scenes, variables


def _covered_after_training(train_patches: str, reader) -> float:
  """Covered fraction of test scenes after 60 scorer steps, reader frozen."""
  scenes, test_scenes, variables = reader
  config = _config(train_patches, synthetic.get_config().entropy_regularizer)
  config.num_train_steps = 60
  config.frozen_params = scorer_signal.READER_PARAMS
  run = scorer_signal.train_scorer(
      config, variables, scenes, test_scenes, steps=60, eval_every=60,
      alignment_batch=None, draws=1)
  return run["coverage"][-1]


@pytest.mark.slow
def test_the_chosen_mode_moves_the_scorer_onto_the_deciding_sign(
    reader_that_reads):
  """The default's soft patches find the coded square among look-alikes
  (k=2 of 9 cells); the straight-through mode lags far behind."""
  assert synthetic.get_config().model.train_patches == "soft"
  soft = _covered_after_training("soft", reader_that_reads)
  print("COVER", soft, _covered_after_training("sampled", reader_that_reads))
  assert soft >= 0.6
  assert _covered_after_training("sampled", reader_that_reads) <= soft - 0.1
