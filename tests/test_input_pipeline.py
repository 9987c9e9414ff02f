# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Input pipeline: determinism, resumption, sharding, eval padding, CUB."""
# pylint: disable=protected-access

import contextlib
import io
import itertools
import subprocess
import sys
from unittest import mock

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import cub
from configs import default
from ptopk_patch_selection import input_pipeline

_NAME = "synthetic_traffic_signs/tiny"  # 16 train, 8 test, 128x128


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("tfds")
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
  assert pipeline.value_range == (0.0, 1.0)
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


def _content_shift(moved, still, pad):
  """The (dy, dx) with moved[y, x] == still[y + dy, x + dx] wherever both
  are inside the image, among |dy|, |dx| <= pad; asserts there is one."""
  h, w = still.shape[:2]
  found = [(dy, dx)
           for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
           if np.array_equal(
               moved[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)],
               still[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)])]
  assert len(found) == 1, found
  return found[0]


def test_boxes_follow_the_translation(data_dir):
  """Each box moves by the offset that moved the image's pixels."""
  pad = 8
  pipeline = input_pipeline.create_datasets(
      _config(data_dir, pad_pixels=pad, color_probability=0.0))
  plain = input_pipeline.create_datasets(
      _config(data_dir, pad_pixels=0, color_probability=0.0))
  shifts = []
  for step in range(2):
    moved, still = pipeline.train_batch(step), plain.train_batch(step)
    np.testing.assert_array_equal(moved["label"], still["label"])
    h, w = moved["image"].shape[1:3]
    for row in range(len(moved["image"])):
      dy, dx = _content_shift(moved["image"][row], still["image"][row], pad)
      shifts.append((dy, dx))
      objects = still["box_mask"][row]
      assert objects.any()
      # A box corner at normalised (y, x) now lies at (y - dy / h, x - dx / w),
      # clipped to the image.
      expected = np.clip(still["boxes"][row][objects] -
                         np.array([dy / h, dx / w] * 2), 0.0, 1.0)
      np.testing.assert_allclose(moved["boxes"][row][objects], expected,
                                 atol=1e-6)
      np.testing.assert_array_equal(moved["is_target"][row],
                                    still["is_target"][row])
  assert any(dy and dx for dy, dx in shifts)  # the test saw real moves


def _build_tool(data_dir) -> subprocess.CompletedProcess:
  """tools.build_dataset of _NAME into `data_dir`, its output captured."""
  return subprocess.run(
      [sys.executable, "-m", "ptopk_patch_selection.tools.build_dataset",
       f"--dataset={_NAME}", f"--data_dir={data_dir}", "--noread_epoch"],
      capture_output=True, text=True, check=True)


def test_build_reports_a_dataset_that_is_already_built(data_dir):
  result = _build_tool(data_dir)
  assert f"Found {_NAME} already built in {data_dir}:" in result.stdout
  assert "Built" not in result.stdout
  assert "train: 16 examples" in result.stdout


def test_a_first_build_prints_no_library_log_lines(tmp_path):
  """Progress bars and the summary; no absl INFO/WARNING lines from TFDS."""
  result = _build_tool(tmp_path)
  assert f"Built {_NAME} in {tmp_path}" in result.stdout
  assert "Variant folder" not in result.stderr  # its own empty version folder
  assert "dataset_builder.py" not in result.stderr  # "Generating dataset" INFO
  assert "Generating splits" in result.stderr  # TFDS's progress bar stays


def test_unbuilt_dataset_error_names_the_build_command(tmp_path):
  config = _config(str(tmp_path))
  with pytest.raises(FileNotFoundError,
                     match="ptopk_patch_selection.tools.build_dataset"):
    input_pipeline.create_datasets(config)
  config.dataset.name = "traffic_signs"
  with pytest.raises(FileNotFoundError, match="Set1Part0.zip"):
    input_pipeline.create_datasets(config)


def _fake_cub_source(builder, split, decoders=None, **kwargs):
  """5 caltech_birds2011 records as its ArrayRecord source would return them.

  Random JPEGs of 300-499 px a side with labels 0, 37, ..., 148, serialised
  and deserialised with the builder's own features and `decoders`.
  """
  del kwargs
  features = builder.info.features
  rng = np.random.default_rng(["train", "test"].index(split))
  records = []
  for i in range(5):
    h, w = rng.integers(300, 500, 2)
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(
        jpeg, format="JPEG")
    example = {
        "image": jpeg.getvalue(), "image/filename": f"{i}.jpg",
        "label": 37 * i, "label_name": "bird",
        "bbox": tfds.features.BBox(0.1, 0.2, 0.7, 0.9),
        "segmentation_mask": np.zeros((h, w, 1), np.uint8),
    }
    records.append(features.deserialize_example_np(
        features.serialize_example(example), decoders=decoders))
  return records


@contextlib.contextmanager
def _fake_cub():
  """The real caltech_birds2011 builder (features, 200 classes) on fake records.

  tfds.testing.mock_data gives the builder without files; its
  download_and_prepare does nothing, so is_prepared is mocked too.
  """
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=_fake_cub_source), \
       mock.patch.object(tfds.core.DatasetBuilder, "is_prepared",
                         return_value=True):
    yield


@pytest.fixture(scope="module")
def cub_pipelines():
  """create_datasets for configs/cub.py on fake CUB: seed, seed again, +1."""
  config = cub.get_config()
  config.batch_size, config.eval_batch_size = 4, 3
  other = cub.get_config()
  other.batch_size, other.eval_batch_size = 4, 3
  other.seed += 1
  with _fake_cub():
    return [input_pipeline.create_datasets(c) for c in (config, config, other)]


def test_cub_records_keep_their_images_encoded():
  """The unused segmentation_mask is never decoded (nor is image, here)."""
  with _fake_cub():
    _, source = input_pipeline._open_split(
        cub.get_config().dataset.name, "train", "unused", "unused")
  # The encoded files as stored: a JPEG and a PNG, not pixel arrays.
  assert source[0]["image"][:3] == b"\xff\xd8\xff"
  assert source[0]["segmentation_mask"][:8] == b"\x89PNG\r\n\x1a\n"


def _find_crop(image, pixels):
  """(top, left, flipped) where `image` shows pixels / 127.5 - 1, or None."""
  size = image.shape[0]
  n = pixels.shape[0] - size + 1
  scaled = pixels / 127.5 - 1.0
  for flipped in (False, True):
    crop = image[:, ::-1] if flipped else image
    corners = np.abs(scaled[:n, :n] - crop[0, 0]).max(axis=-1) < 1e-5
    for top, left in zip(*np.nonzero(corners)):
      if np.allclose(scaled[top:top + size, left:left + size], crop,
                     atol=1e-5):
        return top, left, flipped
  return None


def test_cub_train_batches_crop_flip_and_map_to_minus_one_one(cub_pipelines):
  pipeline, same, other = cub_pipelines
  assert (pipeline.num_classes, pipeline.train_size) == (200, 5)
  assert pipeline.value_range == (-1.0, 1.0)
  assert not pipeline.has_objects
  batches = _take(pipeline.train_batches(), 3)
  for batch in batches:
    assert set(batch) == {"image", "label", "mask"}
    assert batch["image"].shape == (4, 448, 448, 3)
    assert batch["image"].dtype == np.float32
    assert -1.0 <= batch["image"].min() < -0.9
    assert 0.9 < batch["image"].max() <= 1.0
    assert set(batch["label"]) <= {0, 37, 74, 111, 148}
    assert batch["mask"].all()
  crops = []
  for batch in batches:
    for image, label in zip(batch["image"], batch["label"]):
      pixels = pipeline._decode(pipeline._train[label // 37])  # 600x600
      crops.append(_find_crop(image, pixels))
  assert None not in crops
  assert {flipped for _, _, flipped in crops} == {False, True}
  assert len({(top, left) for top, left, _ in crops}) > 1
  _assert_batches_equal(batches, _take(same.train_batches(), 3))
  assert not np.array_equal(batches[0]["image"], other.train_batch(0)["image"])


def test_cub_eval_is_the_centre_crop_in_stored_order(cub_pipelines):
  pipeline = cub_pipelines[0]
  batches = list(pipeline.eval_batches())
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[1]["mask"], [True, True, False])
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(labels, [0, 37, 74, 111, 148])
  images = np.concatenate([b["image"][b["mask"]] for b in batches])
  for index, image in enumerate(images):
    pixels = pipeline._decode(pipeline._eval[index])  # resized to 600x600
    assert pixels.shape == (600, 600, 3)
    np.testing.assert_allclose(image, pixels[76:524, 76:524] / 127.5 - 1.0,
                               atol=1e-5)


def test_cub_tf_float_resize_is_tf_image_resize_on_floats(cub_pipelines):
  """dataset.cub_resize="tf_float" (released): tf.image.resize on float
  pixels, without PIL's antialiasing; batches crop those pixels."""
  config = cub.get_config()
  config.batch_size, config.eval_batch_size = 4, 3
  config.dataset.cub_resize = "tf_float"
  with _fake_cub():
    pipeline = input_pipeline.create_datasets(config)
  record = pipeline._eval[0]
  pixels = pipeline._decode(record)
  assert pixels.dtype == np.float32 and pixels.shape == (600, 600, 3)
  decoded = tf.io.decode_jpeg(record["image"], channels=3,
                              dct_method="INTEGER_FAST")
  np.testing.assert_allclose(
      pixels, tf.image.resize(tf.cast(decoded, tf.float32) / 255.0,
                              (600, 600)).numpy() * 255.0, rtol=1e-5,
      atol=1e-3)
  pil = cub_pipelines[0]._decode(cub_pipelines[0]._eval[0])
  assert np.abs(pixels - pil).max() > 1.0
  image = next(iter(pipeline.eval_batches()))["image"][0]
  np.testing.assert_allclose(image, pixels[76:524, 76:524] / 127.5 - 1.0,
                             atol=1e-5)
  config.dataset.cub_resize = "area"
  with pytest.raises(ValueError, match="cub_resize='area'"):
    input_pipeline.create_datasets(config)


def _fake_cub_examples(n):
  """(key, example) of n small caltech_birds2011 records named 0000.jpg..."""
  for i in range(n):
    jpeg = io.BytesIO()
    Image.fromarray(np.full((40, 50, 3), 10 * i, np.uint8)).save(
        jpeg, format="JPEG")
    yield f"{i:04d}", {
        "image": jpeg.getvalue(), "image/filename": f"{i:04d}.jpg",
        "label": i, "label_name": "bird",
        "bbox": tfds.features.BBox(0.1, 0.2, 0.7, 0.9),
        "segmentation_mask": np.zeros((40, 50, 1), np.uint8)}


@pytest.fixture(scope="module")
def built_fake_cub(tmp_path_factory):
  """caltech_birds2011 built on disk (ArrayRecord, the real builder and
  features) from 12 train and 3 test fake records; nothing is downloaded."""
  path = str(tmp_path_factory.mktemp("cub_tfds"))
  cls = tfds.builder_cls("caltech_birds2011")

  def splits(self, dl_manager):
    del self, dl_manager
    return {"train": _fake_cub_examples(12), "test": _fake_cub_examples(3)}

  with mock.patch.object(cls, "_split_generators", splits), \
       mock.patch.object(cls, "_make_download_manager"):
    tfds.builder("caltech_birds2011", data_dir=path,
                 file_format="array_record").download_and_prepare()
  return path


def test_cub_train_val_trains_on_the_first_images_evaluates_on_the_rest(
    built_fake_cub, monkeypatch):
  """configs/cub.py:train_val, as released: the first TRAIN_VAL_IMAGES
  (5000) images of "train" in stored order train, the rest (994) evaluate."""
  config = cub.get_config("train_val")
  assert (config.dataset.train_split, config.dataset.eval_split) == (
      "train[:5000]", "train[5000:]")
  monkeypatch.setattr(cub, "TRAIN_VAL_IMAGES", 9)  # of the 12 fake images
  config = cub.get_config("train_val")
  config.dataset.data_dir = built_fake_cub
  config.batch_size, config.eval_batch_size = 4, 2
  pipeline = input_pipeline.create_datasets(config)
  stored = [r["image/filename"] for r in tfds.builder(
      "caltech_birds2011", data_dir=built_fake_cub).as_data_source("train")]
  assert len(stored) == 12 and (pipeline.train_size, pipeline.eval_size) == (
      9, 3)
  assert [r["image/filename"] for r in pipeline._train] == stored[:9]
  assert [r["image/filename"] for r in pipeline._eval] == stored[9:]
  batches = list(pipeline.eval_batches())
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(
      labels, [int(name[:4]) for name in stored[9:]])
  trained = {int(label) for batch in itertools.islice(
      pipeline.train_batches(), 9) for label in batch["label"]}
  assert trained == {int(name[:4]) for name in stored[:9]}
