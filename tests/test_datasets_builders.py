# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The TFDS builders on dummy data in the real on-disk formats.

Each builder is built with TFDS's own API, as the build tool does, in the
project's file format (ArrayRecord), then read back: split sizes, and the
stored examples against the source files or the generator.
"""

import io
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from ptopk_patch_selection.datasets import billiard
from ptopk_patch_selection.datasets import synthetic_billiard
from ptopk_patch_selection.datasets import synthetic_traffic_signs
from ptopk_patch_selection.datasets import traffic_signs

_DUMMY = os.path.join(os.path.dirname(traffic_signs.__file__), "dummy_data")


def _build(cls, config, data_dir, manual_dir=None):
  """`cls` with builder config `config`, prepared in data_dir."""
  builder = cls(data_dir=str(data_dir), config=config)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir))
  return builder


def _split_sizes(builder):
  return {name: split.num_examples
          for name, split in builder.info.splits.items()}


def _read(builder, split, **decoders):
  """The examples of `split`, decoders as tfds.decode (name -> decoder)."""
  return list(builder.as_data_source(split=split, decoders=decoders or None))


# Set1 keeps 4 of its 6 annotated images, Set2 3 of 5; the labels follow the
# ATS filter (test_datasets_errors.py says why each one).
_TRAFFIC_TRAIN = {"1277381550Image000009.jpg": 2,
                  "1277381560Image000019.jpg": 0,
                  "1277381601Image000004.jpg": 0,  # MISC_SIGNS only
                  "1277381650Image000012.jpg": 1}
_TRAFFIC_TEST = {"1277382111Image000001.jpg": 3,
                 "1277382144Image000004.jpg": 0,
                 "1277382155Image000005.jpg": 1}


def test_traffic_signs_keeps_the_ats_images_with_their_jpeg_bytes(tmp_path):
  builder = _build(traffic_signs.TrafficSigns, "ats", tmp_path,
                   os.path.join(_DUMMY, "traffic_signs"))
  assert _split_sizes(builder) == {"train": 4, "test": 3}
  examples = {}
  for split, expected in (("train", _TRAFFIC_TRAIN), ("test", _TRAFFIC_TEST)):
    examples[split] = _read(builder, split, image=tfds.decode.SkipDecoding())
    assert {ex["file_name"].decode(): int(ex["label"])
            for ex in examples[split]} == expected
  # Stored as downloaded, not re-encoded: Set2's images are loose files.
  for ex in examples["test"]:
    path = os.path.join(_DUMMY, "traffic_signs", "Set2", "Set2Part0",
                        ex["file_name"].decode())
    with open(path, "rb") as f:
      assert ex["image"] == f.read()


def test_traffic_signs_no_misc_drops_the_misc_signs_only_image(tmp_path):
  builder = _build(traffic_signs.TrafficSigns, "no_misc", tmp_path,
                   os.path.join(_DUMMY, "traffic_signs"))
  assert _split_sizes(builder) == {"train": 3, "test": 3}
  names = {ex["file_name"].decode() for ex in _read(
      builder, "train", image=tfds.decode.SkipDecoding())}
  assert names == set(_TRAFFIC_TRAIN) - {"1277381601Image000004.jpg"}


# The dummy scenes' labels, worked out by hand from their JSON files:
# max-left-right is max(leftmost, rightmost number) - 1 (x = position[0]),
# sum-all-modulo10 the sum of the 4 numbers modulo 10.
_BILLIARD_TRAIN_LABELS = {
    "max-left-right": {0: 8, 1: 3, 2: 5},  # (9, 6), (1, 4), (2, 6)
    "sum-all-modulo10": {0: 6, 1: 8, 2: 3},  # 26, 8, 23
}


@pytest.mark.parametrize("config", sorted(_BILLIARD_TRAIN_LABELS))
def test_billiard_labels_ids_and_pixels(tmp_path, config):
  builder = _build(billiard.Billiard, config, tmp_path,
                   os.path.join(_DUMMY, "billiard"))
  assert _split_sizes(builder) == {"train": 3, "valid": 2, "test": 2}
  examples = _read(builder, "train")
  assert {int(ex["id"]): int(ex["label"]) for ex in examples} == (
      _BILLIARD_TRAIN_LABELS[config])
  folder = os.path.join(_DUMMY, "billiard", "billiard", "train")
  for ex in examples:
    with open(os.path.join(folder, f"{ex['id']}.png"), "rb") as f:
      expected = np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB"))
    np.testing.assert_array_equal(ex["image"], expected)
  for split in ("valid", "test"):
    assert sorted(int(ex["id"]) for ex in _read(builder, split)) == [0, 1]


def _assert_examples_are_the_generator_s(builder, cls, config_name):
  """Every split holds make_example(spec, seed, split, i), i < its size."""
  config = next(c for c in cls.BUILDER_CONFIGS if c.name == config_name)
  assert _split_sizes(builder) == dict(config.split_sizes)
  for split_index, (split, size) in enumerate(config.split_sizes):
    stored = {ex["image"]: ex for ex in _read(
        builder, split, image=tfds.decode.SkipDecoding())}
    assert len(stored) == size
    for index in range(size):
      expected = cls.make_example(config.spec, config.seed, split_index, index)
      ex = stored[expected["image"]]
      assert int(ex["label"]) == expected["label"]
      np.testing.assert_array_equal(ex["objects"]["number"],
                                    expected["objects"]["number"])
      np.testing.assert_allclose(ex["objects"]["bbox"],
                                 expected["objects"]["bbox"], atol=1e-6)


def test_synthetic_traffic_signs_tiny_holds_the_generated_scenes(
    tiny_traffic_data_dir):
  builder = synthetic_traffic_signs.SyntheticTrafficSigns(
      data_dir=tiny_traffic_data_dir, config="tiny")
  assert builder.is_prepared()
  _assert_examples_are_the_generator_s(
      builder, synthetic_traffic_signs.SyntheticTrafficSigns, "tiny")


def test_synthetic_billiard_tiny_holds_the_generated_scenes(tmp_path):
  builder = _build(synthetic_billiard.SyntheticBilliard, "tiny", tmp_path)
  _assert_examples_are_the_generator_s(
      builder, synthetic_billiard.SyntheticBilliard, "tiny")
