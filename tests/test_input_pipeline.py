# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Input pipeline: determinism, resumption, sharding, eval padding."""
# pylint: disable=protected-access

import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import default
from ptopk_patch_selection import datasets
from ptopk_patch_selection import input_pipeline

_NAME = "synthetic_traffic_signs/tiny"  # 16 train, 8 test, 128x128


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("tfds")
  datasets.register_builders()
  tfds.builder(_NAME, data_dir=str(path)).download_and_prepare()
  return str(path)


def _config(data_dir, **overrides):
  config = default.get_config()
  config.dataset.name = _NAME
  config.dataset.data_dir = data_dir
  config.dataset.image_size = (128, 128)
  config.dataset.pad_pixels = 8
  config.batch_size = 4
  config.eval_batch_size = 6
  for key, value in overrides.items():
    setattr(config.dataset, key, value)
  return config


def _take(iterator, n):
  return list(itertools.islice(iterator, n))


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_batch_keys_shapes_and_ranges(data_dir):
  pipeline = input_pipeline.create_datasets(_config(data_dir))
  batch = next(pipeline.train_batches())
  assert batch["image"].shape == (4, 128, 128, 3)
  assert batch["image"].dtype == np.float32
  assert batch["label"].dtype == np.int32
  assert batch["boxes"].shape == (4, 8, 4)
  assert batch["box_mask"].sum(axis=1).min() >= 2
  assert batch["mask"].all()
  assert -0.1 - 1e-6 <= batch["image"].min()
  assert batch["image"].max() <= 1.2 * 1.0 + 0.1 + 1e-6


def test_same_seed_same_batches_other_seed_other_batches(data_dir):
  config = _config(data_dir)
  a = _take(input_pipeline.create_datasets(config).train_batches(), 6)
  b = _take(input_pipeline.create_datasets(config).train_batches(), 6)
  _assert_batches_equal(a, b)
  config.seed += 1
  c = _take(input_pipeline.create_datasets(config).train_batches(), 1)
  assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_resumed_iterator_continues_exactly(data_dir):
  pipeline = input_pipeline.create_datasets(_config(data_dir))
  full = _take(pipeline.train_batches(), 9)  # crosses two epoch ends
  _assert_batches_equal(_take(pipeline.train_batches(start_step=5), 4),
                        full[5:])


def test_every_epoch_is_a_permutation_reshuffled_each_epoch(data_dir):
  pipeline = input_pipeline.create_datasets(
      _config(data_dir, augmentation="none"))
  batches = _take(pipeline.train_batches(), 8)  # two epochs of 16
  eval_images = {}
  source = pipeline._train  # pylint: disable=protected-access
  for index in range(len(source)):
    eval_images[index] = pipeline._decode(source[index])
  def epoch_indices(chunk):
    images = np.concatenate([b["image"] for b in chunk])
    return [next(i for i, im in eval_images.items()
                 if np.allclose(im / 255.0, image, atol=1e-6))
            for image in images]
  first, second = epoch_indices(batches[:4]), epoch_indices(batches[4:])
  assert sorted(first) == list(range(16)) == sorted(second)
  assert first != second


def test_process_shards_are_disjoint_and_cover_the_global_batch(data_dir):
  config = _config(data_dir)
  full = _take(input_pipeline.create_datasets(config).train_batches(), 3)
  shards = [_take(input_pipeline.create_datasets(
      config, process_index=p, process_count=2).train_batches(), 3)
            for p in range(2)]
  for step in range(3):
    for key in full[step]:
      joined = np.concatenate([shards[0][step][key], shards[1][step][key]])
      np.testing.assert_array_equal(joined, full[step][key], err_msg=key)


def test_eval_counts_every_example_once(data_dir):
  config = _config(data_dir)  # 8 test examples, global eval batch 6
  seen = []
  for p in range(2):
    pipeline = input_pipeline.create_datasets(config, process_index=p,
                                              process_count=2)
    batches = list(pipeline.eval_batches())
    assert len(batches) == pipeline.num_eval_batches == 2
    for batch in batches:
      assert batch["image"].shape[0] == 3
      seen.extend(batch["image"][batch["mask"]].reshape(-1, 128 * 128 * 3))
      assert not batch["image"][~batch["mask"]].any()
  assert len(seen) == 8
  assert len({image.tobytes() for image in seen}) == 8


def test_translation_and_colour_augmentation():
  pixels = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
  out = np.empty((5, 6, 3), np.float32)
  aug = input_pipeline._Augmentation(dy=2, dx=-1, scale=2.0, offset=0.5)
  input_pipeline._write_image(pixels, aug, out)
  expected = np.full((5, 6, 3), 0.5, np.float32)
  expected[:3, 1:] = pixels[2:, :5] / 255.0 * 2.0 + 0.5
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  flip = input_pipeline._Augmentation(flip=True)
  input_pipeline._write_image(pixels, flip, out)
  np.testing.assert_allclose(out, pixels[:, ::-1] / 255.0, rtol=1e-6)


def test_boxes_follow_the_translation(data_dir):
  config = _config(data_dir)
  pipeline = input_pipeline.create_datasets(config)
  plain = input_pipeline.create_datasets(_config(data_dir, pad_pixels=0,
                                                 color_probability=0.0))
  moved, still = pipeline.train_batch(0), plain.train_batch(0)
  np.testing.assert_array_equal(moved["label"], still["label"])
  assert not np.array_equal(moved["boxes"], still["boxes"])
  size = (moved["boxes"][..., 2:] - moved["boxes"][..., :2])
  visible = moved["box_mask"] & (size.min(axis=-1) > 0.1)
  assert visible.any()


def test_unbuilt_dataset_error_names_the_build_command(tmp_path):
  config = _config(str(tmp_path))
  with pytest.raises(FileNotFoundError,
                     match="ptopk_patch_selection.datasets.build"):
    input_pipeline.create_datasets(config)
  config.dataset.name = "traffic_signs"
  with pytest.raises(FileNotFoundError, match="Set1Part0.zip"):
    input_pipeline.create_datasets(config)
