# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The readability probe: one reading per factor, and it learns what it can."""

import numpy as np
import pytest

from ptopk_patch_selection.datasets import billiard_scene
from benchmarks import readability

pytestmark = pytest.mark.usefixtures("fast_compile")


def test_probe_gives_one_reading_per_factor():
  spec = billiard_scene.TableSpec(128, 128, ball_radius=(8, 10))
  examples = [billiard_scene.make_example(spec, 0, 0, i) for i in range(8)]
  results = readability.probe(examples, spec.height, lambda n: n - 1,
                              billiard_scene.NUM_CLASSES, [1, 4], steps=3)
  assert list(results) == [1, 4]
  num_test = sum(len(e["objects"]["number"]) for e in examples[6:])
  for reading in results.values():
    assert 0.0 <= reading.accuracy <= 1.0
    assert 0.0 <= reading.balanced_accuracy <= 1.0
    assert 0.0 < reading.majority <= 1.0
    assert reading.num_test == num_test
  assert results[4].crop_px == results[1].crop_px // 4


def test_cnn_learns_constant_colour_classes_deterministically():
  rng = np.random.default_rng(0)
  colours = np.eye(3, dtype=np.float32)  # class c: channel c lit
  labels = rng.integers(0, 3, 96)
  crops = (colours[labels][:, None, None, :] +
           rng.normal(0.0, 0.1, (96, 8, 8, 3))).astype(np.float32)
  args = (crops[:64], labels[:64], crops[64:], 3, 30)
  predictions = readability.cnn_predictions(*args)
  assert (predictions == labels[64:]).mean() > 0.9
  np.testing.assert_array_equal(predictions,
                                readability.cnn_predictions(*args))
