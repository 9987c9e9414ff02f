# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""Builds a dataset, then times one epoch through the input pipeline.

  python -m ptopk_patch_selection.tools.build_dataset \
    --dataset=synthetic_traffic_signs/small --data_dir=data/tfds

From any directory: --data_dir and --manual_dir stand for the config's
dataset fields and, like them, are relative to the root
(`ptopk_patch_selection/locations.py`: $PTOPK_ROOT, else the checkout). Real
datasets read their hand-downloaded files from
`<manual_dir>/<dataset name>/` (data/README.md lists them). The dataset is
written as ArrayRecord, which the input pipeline needs. After building, one
epoch of the train split is read through the input pipeline with the batch
size and augmentation of --config and the throughput printed (skip with
--noread_epoch). Flags left unset take their value from --config.
"""

import os
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import tensorflow_datasets as tfds

from ptopk_patch_selection import cli
from ptopk_patch_selection import console
# Imported to register the project's TFDS builders.
from ptopk_patch_selection import datasets  # pylint: disable=unused-import
from ptopk_patch_selection import errors
from ptopk_patch_selection import input_pipeline
from ptopk_patch_selection import locations
from ptopk_patch_selection.datasets import base

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(locations.checkout() / "configs" / "default.py"),
    "Experiment config (dataset.*, batch).")
_DATASET = flags.DEFINE_string("dataset", None, "TFDS name[/config].")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Built datasets.")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Hand-downloaded files, one sub-folder per dataset.")
_READ_EPOCH = flags.DEFINE_bool(
    "read_epoch", True, "Read one train epoch and print the throughput.")


def build(name: str, data_dir: str,
          manual_dir: str) -> tfds.core.DatasetBuilder:
  """Prepares dataset `name` in `data_dir` as ArrayRecord; returns it."""
  data_dir = locations.resolve(data_dir)
  manual_dir = locations.resolve(manual_dir)
  builder = tfds.builder(name, data_dir=data_dir,
                         file_format=base.FILE_FORMAT)
  folder = os.path.abspath(os.path.join(manual_dir, builder.name))
  download_config = tfds.download.DownloadConfig(manual_dir=folder)
  if base.is_built(builder):
    print(f"Found {name} already built in {data_dir}:")
  else:
    instructions = base.download_instructions(builder, manual_dir)
    if instructions and not (os.path.isdir(folder) and os.listdir(folder)):
      raise errors.MissingFileError(
          f"{folder} is missing or empty. Download into it:\n{instructions}")
    start = time.time()
    builder.download_and_prepare(download_config=download_config)
    print(f"Built {name} in {data_dir} in {time.time() - start:.1f} s:")
  for split, info in builder.info.splits.items():
    print(f"  {split}: {info.num_examples} examples, {info.num_bytes / 1e6:.0f}"
          " MB")
  return builder


def time_epoch(builder: tfds.core.DatasetBuilder, config) -> None:
  """Reads one train epoch through the input pipeline; prints images/s."""
  features = builder.info.features
  config.dataset.num_classes = features["label"].num_classes
  if config.dataset.augmentation != "cub":
    config.dataset.image_size = features["image"].shape[:2]
  pipeline = input_pipeline.create_datasets(config)
  steps = -(-pipeline.train_size // config.batch_size)
  batches = pipeline.train_batches()
  start = time.time()
  for _ in range(steps):
    next(batches)
  seconds = time.time() - start
  images = steps * config.batch_size
  print(f"Read one epoch ({images} images, batch {config.batch_size}, "
        f"augmentation {config.dataset.augmentation!r}, "
        f"{config.dataset.num_threads} threads) in {seconds:.1f} s: "
        f"{images / seconds:.0f} images/s, {1000 * seconds / steps:.0f} ms "
        "per batch.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  console.quiet_library_logs()
  config = _CONFIG.value
  config.dataset.name = _DATASET.value or config.dataset.name
  config.dataset.data_dir = _DATA_DIR.value or config.dataset.data_dir
  config.dataset.manual_dir = _MANUAL_DIR.value or config.dataset.manual_dir
  builder = build(config.dataset.name, config.dataset.data_dir,
                  config.dataset.manual_dir)
  if _READ_EPOCH.value:
    time_epoch(builder, config)


if __name__ == "__main__":
  cli.run(main)
