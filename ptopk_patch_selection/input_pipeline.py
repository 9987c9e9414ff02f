# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Input pipeline: built TFDS datasets -> augmented, sharded numpy batches.

`create_datasets(config, process_index=..., process_count=...)` returns an
`InputPipeline` over `config.dataset.name` (any project builder, or
`caltech_birds2011`), read with random access (`tfds.data_source` over
ArrayRecord files). Relative `dataset.data_dir` and `dataset.manual_dir` are
relative to `locations.root()` ($PTOPK_ROOT, else the checkout).

Training is an endless stream of global batches of `config.batch_size`. The
example at global position g = step * batch_size + i is
`order[g]`, where `order` reshuffles the train split every epoch (grain's
index shuffle, seeded from `config.seed`), and its augmentation draws from a
numpy generator seeded with (config.seed, g). A batch is therefore a pure
function of (seed, step): `train_batches(start_step=n)` resumes exactly where
an uninterrupted run would be, whatever the number of reader threads.
Process p of P gets rows [p * L, (p + 1) * L) of every global batch,
L = batch_size // P.

`eval_batches()` reads the eval split once, in stored order, in global batches
of `config.eval_batch_size`; rows past the end are zero padding with
mask False, so every example counts exactly once over all processes.

Batches are dicts of numpy arrays (L = local batch size):
  image     float32 (L, h, w, c): [0, 1]; "cub": [-1, 1]; the "traffic"
            colour augmentation maps [0, 1] to [b, a + b] (no clipping).
  label     int32 (L,)
  mask      bool (L,): False for eval padding (always True in training)
  boxes     float32 (L, max_objects, 4) (ymin, xmin, ymax, xmax) in [0, 1] of
            the augmented image; zeros where box_mask is False
  box_mask  bool (L, max_objects)
  is_target bool (L, max_objects): the object that decides the label
The last three only for datasets with an `objects` feature (the synthetic
ones). c is the channel count of the dataset's image feature: 1 for
megapixel_mnist, else 3.

Augmentation (`config.dataset.augmentation`, training only except cub):
  traffic  : zero-pad `pad_pixels` and crop back (a random translation), then
             with probability `color_probability` image * a + b,
             a ~ U(color_scale), b ~ U(color_offset);
  billiard : the translation only (the paper pads 1000 to 1100: 50 px);
  cub      : resize to `resize` (aspect ignored), random crop of image_size
             and horizontal flip (eval: centre crop), values in [-1, 1].
             `cub_resize`: "pil_uint8" (PIL bilinear on the uint8 pixels,
             antialiased) or "tf_float" (tf.image.resize on float pixels,
             no antialiasing, as released);
  none     : nothing.

Speed: images are decoded with TensorFlow (JPEG with the fast integer DCT);
decoding and augmenting run in `config.dataset.num_threads` threads
(PIL and numpy release the GIL), `prefetch_batches` batches ahead.
"""

import dataclasses
import os
from typing import Any, Iterator

import grain
import ml_collections
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

# Importing datasets registers the project's TFDS builders.
from ptopk_patch_selection import datasets
from ptopk_patch_selection import errors
from ptopk_patch_selection import locations
from ptopk_patch_selection.datasets import base

AUGMENTATIONS = ("none", "traffic", "billiard", "cub")
CUB_RESIZES = ("pil_uint8", "tf_float")
_MAX_STEPS = 2**62
_BUILD_COMMAND = ("python -m ptopk_patch_selection.tools.build_dataset "
                  "--dataset={name} --data_dir={data_dir} "
                  "--manual_dir={manual_dir}")


def _rebuild(name: str, data_dir: str, manual_dir: str) -> str:
  """What to do about a damaged built dataset."""
  folder = os.path.abspath(os.path.join(data_dir, name))
  return (f"Delete {folder} and build it again with:\n  " +
          _BUILD_COMMAND.format(name=name, data_dir=data_dir,
                                manual_dir=manual_dir))


def _open_split(name: str, split: str, data_dir: str, manual_dir: str):
  """Random-access source of a built split, or an error saying how to build."""
  data_dir = locations.resolve(data_dir)
  manual_dir = locations.resolve(manual_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    # TFDS raises many types, for an unknown name or a damaged
    # dataset_info.json / features.json.
    raise errors.BadFileError(
        f"Cannot open dataset {name!r} in {data_dir}: "
        f"{str(e).splitlines()[0]}\nIf config.dataset.name is right (one of "
        f"{', '.join(datasets.BUILDER_NAMES)} with its /<config>, or a "
        "TFDS name such as caltech_birds2011), its built copy is damaged. "
        + _rebuild(name, data_dir, manual_dir)) from e
  if not base.is_built(builder):
    instructions = base.download_instructions(builder, manual_dir)
    raise errors.MissingFileError(
        f"Dataset {name!r} is not built in {data_dir}. Build it with:\n  " +
        _BUILD_COMMAND.format(name=name, data_dir=data_dir,
                              manual_dir=manual_dir) +
        (f"\nIt reads files you download by hand:\n{instructions}"
         if instructions else ""))
  # Images stay encoded: `image` is decoded here, others (CUB's
  # segmentation_mask) are never used.
  decoders = {name: tfds.decode.SkipDecoding()
              for name, feature in builder.info.features.items()
              if isinstance(feature, tfds.features.Image)}
  try:
    return builder, builder.as_data_source(split=split, decoders=decoders)
  except NotImplementedError as e:
    raise errors.BadFileError(
        f"Dataset {name!r} in {data_dir} is not stored as ArrayRecord. " +
        _rebuild(name, data_dir, manual_dir)) from e


def _order_seed(seed: int) -> int:
  return int(np.random.SeedSequence([seed, 0]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class _Augmentation:
  """Per-example augmentation parameters drawn from one generator."""
  dy: int = 0  # translation: output pixel (y, x) shows input (y + dy, x + dx)
  dx: int = 0
  scale: float = 1.0  # colour: image * scale + offset
  offset: float = 0.0
  flip: bool = False


def _draw_augmentation(config: ml_collections.ConfigDict,
                       rng: np.random.Generator) -> _Augmentation:
  kind = config.augmentation
  if kind in ("traffic", "billiard"):
    pad = config.pad_pixels
    dy, dx = (int(v) for v in rng.integers(-pad, pad + 1, 2))
    if kind == "traffic" and rng.random() < config.color_probability:
      return _Augmentation(dy, dx, float(rng.uniform(*config.color_scale)),
                           float(rng.uniform(*config.color_offset)))
    return _Augmentation(dy, dx)
  if kind == "cub":
    pad = (config.resize - config.image_size[0]) // 2
    dy, dx = (int(v) for v in rng.integers(-pad, pad + 1, 2))
    return _Augmentation(dy, dx, scale=2.0, offset=-1.0,
                         flip=bool(rng.random() < 0.5))
  return _Augmentation()


def _eval_augmentation(config: ml_collections.ConfigDict) -> _Augmentation:
  """No randomness; cub maps to [-1, 1] (and centre-crops, like training)."""
  if config.augmentation == "cub":
    return _Augmentation(scale=2.0, offset=-1.0)
  return _Augmentation()


def _write_image(pixels: np.ndarray, aug: _Augmentation,
                 out: np.ndarray) -> None:
  """Writes the shifted, colour-transformed crop of `pixels` into `out`.

  out[y, x] = pixels[y + top, x + left] / 255 * scale + offset, and `offset`
  where that falls outside `pixels`; (top, left) is the centred crop moved by
  (dy, dx). Then an optional horizontal flip.

  Args:
    pixels: uint8 (H, W, c).
    aug: translation, colour and flip parameters.
    out: float32 (h, w, c) destination.
  """
  h, w = out.shape[:2]
  top = (pixels.shape[0] - h) // 2 + aug.dy
  left = (pixels.shape[1] - w) // 2 + aug.dx
  y0, x0 = max(top, 0), max(left, 0)
  y1, x1 = min(top + h, pixels.shape[0]), min(left + w, pixels.shape[1])
  # Fill only the border, not the whole image: the first write of a fresh
  # page costs about as much as the copy.
  ry0, rx0 = y0 - top, x0 - left  # the copied region in `out`
  ry1, rx1 = max(y1 - top, ry0), max(x1 - left, rx0)
  out[:ry0] = aug.offset
  out[ry1:] = aug.offset
  out[ry0:ry1, :rx0] = aug.offset
  out[ry0:ry1, rx1:] = aug.offset
  if ry1 > ry0 and rx1 > rx0:
    dst = out[ry0:ry1, rx0:rx1]
    np.multiply(pixels[y0:y1, x0:x1], np.float32(aug.scale / 255.0), out=dst)
    if aug.offset:
      dst += np.float32(aug.offset)
  if aug.flip:
    out[...] = out[:, ::-1]


class InputPipeline:
  """Train and eval batches of one dataset for one process (see module doc).

  Attributes:
    num_classes: number of labels.
    train_size: examples in the train split.
    eval_size: examples in the eval split.
    image_size: (h, w) of the batches.
    channels: c of the batches' images (the dataset's: 1 or 3).
    local_batch_size: training rows per process.
    local_eval_batch_size: eval rows per process.
    num_eval_batches: eval batches per pass (the last one padded).
    has_objects: whether batches carry boxes, box_mask and is_target.
    value_range: (low, high) of the evaluation images: (0, 1), or (-1, 1)
      for "cub".
  """

  def __init__(self, config: ml_collections.ConfigDict, *,
               process_index: int = 0, process_count: int = 1):
    data = config.dataset
    if data.augmentation not in AUGMENTATIONS:
      raise errors.ConfigError(
          f"Unknown config.dataset.augmentation {data.augmentation!r}; "
          f"expected one of {AUGMENTATIONS}.")
    if data.cub_resize not in CUB_RESIZES:
      raise errors.ConfigError(
          f"config.dataset.cub_resize={data.cub_resize!r} is not one of "
          f"{CUB_RESIZES}.")
    for size in (config.batch_size, config.eval_batch_size):
      if size % process_count:
        raise errors.ConfigError(f"Batch size {size} is not divisible by "
                                 f"the {process_count} processes.")
    self._data = data
    self._seed = config.seed
    self._process_index = process_index
    self._batch_size = config.batch_size
    self._eval_batch_size = config.eval_batch_size
    self.local_batch_size = config.batch_size // process_count
    self.local_eval_batch_size = config.eval_batch_size // process_count
    builder, self._train = _open_split(data.name, data.train_split,
                                       data.data_dir, data.manual_dir)
    _, self._eval = _open_split(data.name, data.eval_split, data.data_dir,
                                data.manual_dir)
    features = builder.info.features
    self.num_classes = features["label"].num_classes
    if self.num_classes != data.num_classes:
      raise errors.ConfigError(
          f"{data.name} has {self.num_classes} classes but "
          f"config.dataset.num_classes is {data.num_classes}.")
    self.has_objects = "objects" in features
    self.channels = features["image"].shape[-1] or 3
    self.train_size = len(self._train)
    self.eval_size = len(self._eval)
    self.image_size = tuple(data.image_size)
    evaluation = _eval_augmentation(data)
    self.value_range = (evaluation.offset,
                        evaluation.offset + evaluation.scale)
    self.num_eval_batches = -(-self.eval_size // config.eval_batch_size)
    self._order = grain.MapDataset.range(self.train_size).shuffle(
        seed=_order_seed(config.seed)).repeat()
    self._read_options = grain.ReadOptions(
        num_threads=data.num_threads,
        prefetch_buffer_size=data.prefetch_batches)

  def _decode(self, record: dict[str, Any]) -> np.ndarray:
    """(H, W, c) pixels in [0, 255] of a record: uint8, or for "cub" resized
    (float32 with cub_resize="tf_float")."""
    data = record["image"]
    if data[:2] == b"\xff\xd8":  # JPEG: the fast DCT is ~1.5x faster
      pixels = tf.io.decode_jpeg(data, channels=self.channels,
                                 dct_method="INTEGER_FAST")
    else:
      pixels = tf.io.decode_image(data, channels=self.channels,
                                  expand_animations=False)
    pixels = pixels.numpy()
    if self._data.augmentation == "cub":
      size = (self._data.resize, self._data.resize)
      if self._data.cub_resize == "tf_float":
        return tf.image.resize(tf.cast(pixels, tf.float32), size,
                               "bilinear").numpy()
      return np.asarray(Image.fromarray(pixels).resize(
          size, Image.Resampling.BILINEAR))
    if pixels.shape[:2] != self.image_size:
      raise errors.ConfigError(
          f"{self._data.name} images are {pixels.shape[:2]} but "
          f"config.dataset.image_size is {self.image_size}.")
    return pixels

  def _make_batch(self, source, indices: list[int | None],
                  augmentations: list[_Augmentation]) -> dict[str, np.ndarray]:
    """Decodes and augments `source[i]` for each i (None: a padding row)."""
    n, (h, w) = len(indices), self.image_size
    batch = {
        "image": np.empty((n, h, w, self.channels), np.float32),
        "label": np.zeros((n,), np.int32),
        "mask": np.array([i is not None for i in indices]),
    }
    if self.has_objects:
      m = self._data.max_objects
      batch["boxes"] = np.zeros((n, m, 4), np.float32)
      batch["box_mask"] = np.zeros((n, m), bool)
      batch["is_target"] = np.zeros((n, m), bool)
    for row, (index, aug) in enumerate(zip(indices, augmentations)):
      if index is None:
        batch["image"][row] = 0.0
        continue
      try:
        record = source[index]
      except RuntimeError as e:  # array_record on a damaged file
        data = self._data
        raise errors.BadFileError(
            f"Example {index} of dataset {data.name!r} in {data.data_dir} "
            f"cannot be read ({e}). " +
            _rebuild(data.name, data.data_dir, data.manual_dir)) from e
      pixels = self._decode(record)
      _write_image(pixels, aug, batch["image"][row])
      batch["label"][row] = record["label"]
      if self.has_objects:
        self._write_objects(record["objects"], pixels.shape, aug, batch, row)
    return batch

  def _write_objects(self, objects, shape, aug, batch, row) -> None:
    boxes = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
    if len(boxes) > self._data.max_objects:
      raise errors.ConfigError(
          f"An example has {len(boxes)} objects, more than "
          f"config.dataset.max_objects={self._data.max_objects}.")
    shift = np.array([aug.dy / shape[0], aug.dx / shape[1]] * 2, np.float32)
    boxes = np.clip(boxes - shift, 0.0, 1.0)
    k = len(boxes)
    batch["boxes"][row, :k] = boxes
    batch["box_mask"][row, :k] = ((boxes[:, 2] > boxes[:, 0]) &
                                  (boxes[:, 3] > boxes[:, 1]))
    batch["is_target"][row, :k] = np.asarray(objects["is_target"], bool)

  def train_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's part of global training batch `step`."""
    first = (step * self._batch_size +
             self._process_index * self.local_batch_size)
    positions = range(first, first + self.local_batch_size)
    augmentations = [
        _draw_augmentation(self._data,
                           np.random.default_rng([self._seed, 1, g]))
        for g in positions]
    return self._make_batch(self._train, [self._order[g] for g in positions],
                            augmentations)

  def train_batches(self, start_step: int = 0) -> Iterator[dict[str, Any]]:
    """Endless iterator of `train_batch(step)` for step = start_step, ..."""
    steps = grain.MapDataset.range(start_step, _MAX_STEPS)
    return iter(steps.map(self.train_batch).to_iter_dataset(self._read_options))

  def eval_batch(self, index: int) -> dict[str, np.ndarray]:
    """This process's part of eval batch `index` (padded with mask False)."""
    first = (index * self._eval_batch_size +
             self._process_index * self.local_eval_batch_size)
    indices = [g if g < self.eval_size else None
               for g in range(first, first + self.local_eval_batch_size)]
    augmentations = [_eval_augmentation(self._data)] * len(indices)
    return self._make_batch(self._eval, indices, augmentations)

  def eval_batches(self) -> Iterator[dict[str, Any]]:
    """One pass over the eval split: `num_eval_batches` batches."""
    batches = grain.MapDataset.range(self.num_eval_batches).map(
        self.eval_batch)
    return iter(batches.to_iter_dataset(self._read_options))


def create_datasets(config: ml_collections.ConfigDict, *,
                    process_index: int = 0,
                    process_count: int = 1) -> InputPipeline:
  """The input pipeline of `config.dataset` for one process.

  Args:
    config: the experiment config (fields: dataset.*, batch_size,
      eval_batch_size, seed).
    process_index: this process (jax.process_index()).
    process_count: number of processes (jax.process_count()).

  Returns:
    An `InputPipeline`; see the module docstring for the batches.

  Raises:
    errors.MissingFileError: the dataset is not built (the message says how).
    errors.BadFileError: it cannot be read (the message says what to do).
    errors.ConfigError: inconsistent config (classes, image size, batch
      sizes).
  """
  return InputPipeline(config, process_index=process_index,
                       process_count=process_count)
