# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""How often must a patch show the sign before the reader learns to read it?

Isolates the reader of the embedded default (configs/synthetic.py: the thin
ResNet-18 and the classifier head on one 96 px patch per image, the
models/patch_classifier.py that tools/pretrain_reader.py trains, with the same
reader_training loop and pixels in [0, 1] as the input pipeline's) from the
scorer. Each training image of synthetic_traffic_signs/small (drawn here
by `traffic_scene`, no build needed) contributes a patch that, with
probability `coverage`, contains its deciding sign (a look-alike for EMPTY)
and otherwise lies anywhere in the image; the label is always the image's.
That is what PatchNet's reader sees when a fraction `coverage` of its
selections hold the sign: the other images teach it nothing but noise.
Test patches always contain the deciding sign (or a look-alike), so the test
accuracy says how well the reader reads (BatchNorm uses the test batch's
statistics: the running averages lag behind a reader that learns fast).

  python -m benchmarks.reader_noise [--coverages=1,0.5,0.25]
                                    [--reader_steps=2000] [--digit_height=0.34]

Random patches cover the sign in about 13% of the digits scenes, and for
random patches to fail (below 50% accuracy) the coverage must stay below
about a third: this table shows how long the reader needs at such rates.
Writes benchmarks/results/reader_noise.{json,md}.
"""

import functools
import time

from absl import app
from absl import flags
import numpy as np

from benchmarks import common
from configs import synthetic
from ptopk_patch_selection import reader_training
from ptopk_patch_selection.datasets import drawing
from ptopk_patch_selection.datasets import generation
from ptopk_patch_selection.datasets import traffic_scene
from ptopk_patch_selection.models import patch_classifier

_COVERAGES = flags.DEFINE_list(
    "coverages", ["1", "0.5", "0.25"],
    "Fractions of training patches that show the deciding sign.")
_READER_STEPS = flags.DEFINE_integer("reader_steps", 2000,
                                     "Training steps per coverage.")
_READER_IMAGES = flags.DEFINE_list("reader_images", ["3000", "500"],
                                   "Train and test images.")
_DIGIT_HEIGHT = flags.DEFINE_float(
    "digit_height", traffic_scene.SceneSpec.digit_height,
    "Number height / sign diameter (the dataset's by default).")
_EVAL_EVERY = 250


def scene_patches(index: int, split: int, spec: traffic_scene.SceneSpec,
                  patch_size: int) -> tuple[np.ndarray, np.ndarray, int]:
  """(sign patch, random patch, label) of scene `index` of `split`.

  The sign patch holds the deciding sign's whole box (a random look-alike's
  for EMPTY) at a random offset; the random patch lies anywhere.
  """
  label = index % len(traffic_scene.CLASS_NAMES)
  image, objects = traffic_scene.render_scene(
      spec, label, drawing.example_rng(0, split, index))
  pixels = np.asarray(image)
  rng = np.random.default_rng([split, index])
  targets = [o for o in objects if o["is_target"]]
  sign = targets[0] if targets else objects[rng.integers(len(objects))]
  size = np.array([spec.height, spec.width])
  top_left = (np.array(sign["bbox"][:2]) * size).astype(int)
  bottom_right = np.ceil(np.array(sign["bbox"][2:]) * size).astype(int)
  low = np.maximum(bottom_right - patch_size, 0)
  high = np.minimum(size - patch_size, top_left)
  y, x = rng.integers(low, high + 1)
  ry, rx = rng.integers(0, size - patch_size + 1)
  return (pixels[y:y + patch_size, x:x + patch_size],
          pixels[ry:ry + patch_size, rx:rx + patch_size], label)


def make_patches(num_images: int, split: int, spec, patch_size: int):
  """uint8 sign patches (n, p, p, 3), random patches and labels (n,)."""
  fn = functools.partial(scene_patches, split=split, spec=spec,
                         patch_size=patch_size)
  signs, randoms, labels = zip(*generation.parallel_map(fn, range(num_images)))
  return np.stack(signs), np.stack(randoms), np.array(labels)


def mixed_batch(rng: np.random.Generator, signs, randoms, labels,
                batch_size: int, coverage: float):
  """A batch whose patches show the sign with probability `coverage`."""
  index = rng.integers(0, len(labels), batch_size)
  shows_sign = rng.random(batch_size) < coverage
  patches = np.where(shows_sign[:, None, None, None], signs[index],
                     randoms[index])
  return patches, labels[index]


def reading_curve(config, train_data, test_data, coverage: float,
                  steps: int, seed: int = 0) -> list[float]:
  """Test accuracy every _EVAL_EVERY steps of training at `coverage`."""
  signs, randoms, labels = train_data
  test_signs, _, test_labels = test_data
  training = reader_training.ReaderTraining(
      patch_classifier.create(config.model.feature_network,
                              config.dataset.num_classes),
      learning_rate=config.learning_rate, weight_decay=config.weight_decay,
      seed=seed, example_patches=reader_training.to_float(signs[:2]))
  rng = np.random.default_rng(seed)
  curve = []
  for i in range(1, steps + 1):
    patches, batch_labels = mixed_batch(rng, signs, randoms, labels,
                                        config.batch_size, coverage)
    training.step(reader_training.to_float(patches), batch_labels)
    if i % _EVAL_EVERY == 0 or i == steps:
      curve.append(training.accuracy(reader_training.to_float(test_signs),
                                     test_labels, batch_statistics=True))
      print(f"coverage {coverage:g}: step {i}, test accuracy "
            f"{curve[-1]:.3f}", flush=True)
  return curve


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = synthetic.get_config("scratch")
  spec = traffic_scene.SceneSpec(*config.dataset.image_size,
                                 digit_height=_DIGIT_HEIGHT.value)
  num_train, num_test = (int(n) for n in _READER_IMAGES.value)
  start = time.time()
  train_data = make_patches(num_train, 0, spec, config.model.patch_size)
  test_data = make_patches(num_test, 1, spec, config.model.patch_size)
  print(f"Drew {num_train} + {num_test} scenes in {time.time() - start:.0f} s",
        flush=True)
  steps = _READER_STEPS.value
  eval_steps = [s for s in range(1, steps + 1)
                if s % _EVAL_EVERY == 0 or s == steps]
  rows, results = [], {"machine": common.machine_description(),
                       "batch_size": config.batch_size,
                       "digit_height": spec.digit_height,
                       "eval_steps": eval_steps, "curves": {}}
  for coverage in (float(c) for c in _COVERAGES.value):
    start = time.time()
    curve = reading_curve(config, train_data, test_data, coverage, steps)
    results["curves"][str(coverage)] = curve
    rows.append([coverage] + curve + [(time.time() - start) / steps])
  table = common.markdown_table(
      ["coverage"] + [f"step {s}" for s in eval_steps] + ["s / step"], rows)
  caption = (f"Test accuracy on patches that show the deciding sign, "
             f"{config.model.feature_network} + head, batch "
             f"{config.batch_size}, AdamW {config.learning_rate:g}; "
             f"{num_train} train / {num_test} test scenes, numbers "
             f"{spec.digit_height:g} of the sign's diameter, seed 0, "
             f"{results['machine']['backend']} with "
             f"{results['machine']['cpu_count']} cores; chance 0.25.\n\n")
  common.write_results("reader_noise", results, caption + table)
  print(table)


if __name__ == "__main__":
  app.run(main)
