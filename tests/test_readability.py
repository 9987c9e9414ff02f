# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The readability probe: one reading per factor, and it learns what it can."""

import numpy as np
import pytest

from ptopk_patch_selection.datasets import billiard_scene
from benchmarks import readability

pytestmark = pytest.mark.usefixtures("fast_compile")


def test_probe_gives_one_reading_per_factor(monkeypatch):
  """Each reading scores the CNN's predictions against the test objects'
  classes, in the order of the crops it was given."""
  spec = billiard_scene.TableSpec(128, 128, ball_radius=(8, 10))
  examples = [billiard_scene.make_example(spec, 0, 0, i) for i in range(8)]
  calls = []
  cnn_predictions = readability.cnn_predictions

  def recorded(x_train, y_train, x_test, *args):
    predictions = cnn_predictions(x_train, y_train, x_test, *args)
    calls.append((x_train.shape, y_train, x_test.shape, predictions))
    return predictions

  monkeypatch.setattr(readability, "cnn_predictions", recorded)
  results = readability.probe(examples, spec.height, lambda n: n - 1,
                              billiard_scene.NUM_CLASSES, [1, 4], steps=3)
  assert list(results) == [1, 4]
  # Images 0-5 train (3 crops of each ball), 6-7 test (one each).
  train_labels = np.concatenate([np.asarray(e["objects"]["number"]) - 1
                                 for e in examples[:6] for _ in range(3)])
  labels = np.concatenate([np.asarray(e["objects"]["number"]) - 1
                           for e in examples[6:]])
  for (factor, reading), call in zip(results.items(), calls, strict=True):
    train_shape, y_train, test_shape, predictions = call
    side = reading.crop_px
    assert train_shape == (len(train_labels), side, side, 3)
    np.testing.assert_array_equal(y_train, train_labels)
    assert test_shape == (len(labels), side, side, 3), factor
    assert reading.num_test == len(labels)
    assert reading.accuracy == pytest.approx((predictions == labels).mean())
    assert reading.balanced_accuracy == pytest.approx(np.mean(
        [(predictions[labels == c] == c).mean() for c in np.unique(labels)]))
    assert reading.majority == pytest.approx(
        np.bincount(labels).max() / len(labels))
  assert results[4].crop_px == results[1].crop_px // 4


def test_reading_of_known_predictions():
  """3 of 4 right; recalls 1 (class 0), 1/2 (class 1), 1 (class 4);
  class 1 is the commonest, 2 of 4."""
  reading = readability._reading(  # pylint: disable=protected-access
      np.array([0, 0, 1, 4]), np.array([0, 1, 1, 4]), crop_px=7)
  assert reading == readability.Reading(
      accuracy=0.75, balanced_accuracy=pytest.approx(2.5 / 3),
      majority=0.5, num_test=4, crop_px=7)


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
