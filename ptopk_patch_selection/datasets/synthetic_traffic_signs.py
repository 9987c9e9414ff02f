# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""`synthetic_traffic_signs`: procedural speed-limit signs among look-alikes.

Scenes are drawn by `traffic_scene` (see its docstring for the content and the
geometry bound). Configs:

  textures : 512x512, 3000 train / 500 test; the CPU default. Signs of 48-64
          px carry texture codes (stripes, a checkerboard) that vanish at
          the scorer's 8x downscale and that a small CNN learns quickly.
  small : 512x512, 3000 train / 500 test, the digits; the hard variant (its
          reader needs far more steps than a CPU run has). Signs of 26-36 px
          are unreadable at the scorer's 8x downscale.
  paper : 960x1280 like the Swedish Traffic Signs, 747 train / 684 test, the
          same 26-36 px signs.
  tiny  : 128x128, 16 train / 8 test, smaller signs; for tests only.

Features: image (JPEG, quality 90), label (EMPTY, 50_SIGN, 70_SIGN, 80_SIGN),
objects: Sequence of {bbox (normalised), number (0 for bar or blank),
is_target}, one per red-ring sign.

Build: python -m ptopk_patch_selection.tools.build_dataset \
  --dataset=synthetic_traffic_signs/small
"""

import tensorflow_datasets as tfds

from ptopk_patch_selection.datasets import generation
from ptopk_patch_selection.datasets import traffic_scene


def _config(name, description, spec, train, test, scorer_downscale=8):
  return generation.SyntheticConfig(
      name=name, description=description, spec=spec,
      split_sizes=(("train", train), ("test", test)), seed=0,
      scorer_downscale=scorer_downscale)


class SyntheticTrafficSigns(generation.SyntheticBuilder):
  """Road scenes with zero or one speed-limit sign among look-alikes."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "The textures config; other configs unchanged."}
  BUILDER_CONFIGS = [
      _config("textures", "512x512, texture-coded signs, CPU-sized.",
              traffic_scene.SceneSpec(512, 512, sign_diameter=(48, 64),
                                      content="texture"), 3000, 500),
      _config("small", "512x512, CPU-sized.",
              traffic_scene.SceneSpec(512, 512), 3000, 500),
      _config("paper", "960x1280, the Swedish Traffic Signs sizes.",
              traffic_scene.SceneSpec(960, 1280, margin=100), 747, 684),
      _config("tiny", "128x128, a few examples for tests.",
              traffic_scene.SceneSpec(128, 128, sign_diameter=(16, 22),
                                      margin=4),
              16, 8, scorer_downscale=4),
  ]
  label_kwargs = dict(names=traffic_scene.CLASS_NAMES)
  make_example = staticmethod(traffic_scene.make_example)
