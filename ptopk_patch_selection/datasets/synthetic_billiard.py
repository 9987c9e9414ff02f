# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""`synthetic_billiard`: procedural numbered balls, label max-left-right.

Tables are drawn by `billiard_scene` (content and geometry bound in its
docstring). Configs:

  small : 512x512, 8000 train / 1000 validation / 2000 test, balls of radius
          14-18 px (digits readable at full resolution, at chance at 4x and
          8x: data/README.md, readability).
  paper : 1000x1000 like the paper's renders, 8000 / 2000 / 10000, radius
          20-26 px, number discs 0.18 of the radius (digits readable at full
          resolution, at chance at the paper's 4x downscale).
  tiny  : 128x128, a few examples for tests.

Features: image (JPEG, quality 90), label (9 classes: max - 1), objects:
Sequence of {bbox (normalised ball box), number, is_target (leftmost or
rightmost ball)}.
"""

import tensorflow_datasets as tfds

from ptopk_patch_selection.datasets import billiard_scene
from ptopk_patch_selection.datasets import generation


def _config(name, description, spec, train, valid, test, scorer_downscale):
  return generation.SyntheticConfig(
      name=name, description=description, spec=spec,
      split_sizes=(("train", train), ("valid", valid), ("test", test)),
      seed=1, scorer_downscale=scorer_downscale)


class SyntheticBilliard(generation.SyntheticBuilder):
  """Billiard tables; label = max(leftmost, rightmost number) - 1."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Smaller number discs, same ink for every number: the digits "
               "are no longer readable at 4x.",
  }
  BUILDER_CONFIGS = [
      _config("small", "512x512, CPU-sized.",
              billiard_scene.TableSpec(512, 512), 8000, 1000, 2000, 8),
      _config("paper", "1000x1000, the paper's sizes.",
              # Discs of ~4 px radius, close to small's: unreadable at 4x.
              billiard_scene.TableSpec(1000, 1000, ball_radius=(20, 26),
                                       disc_ratio=0.18),
              8000, 2000, 10000, 4),
      _config("tiny", "128x128, a few examples for tests.",
              billiard_scene.TableSpec(128, 128, ball_radius=(8, 10)),
              18, 9, 9, 4),
  ]
  label_kwargs = dict(num_classes=billiard_scene.NUM_CLASSES)
  make_example = staticmethod(billiard_scene.make_example)
