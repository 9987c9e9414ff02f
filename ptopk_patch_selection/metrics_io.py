# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Reads the scalars and images that CLU's metric writers log to a workdir.

`clu.metric_writers.create_default_writer(workdir)` writes TensorBoard event
files (`events.out.tfevents.*`). TF2 summary writers store a scalar as a
rank-0 tensor of the "scalars" plugin and the images of one `write_images`
call as a string tensor of the "images" plugin: [width, height, png_1, ...].
Old-style (TF1) `simple_value` scalars and encoded images are read as well.

  metrics = metrics_io.read_metrics("data/workdirs/synthetic")
  eval_accuracy = metrics.query("split == 'eval' and name == 'accuracy'")
  for step, image in metrics_io.read_images(workdir, "eval_selection"): ...

A tag "train_loss" or "train/loss" is split "train", name "loss"; the known
splits are `SPLITS`; other tags ("steps_per_sec") have split "". Where the
same (split, name, step) or (tag, step) was logged more than once (a resumed
run writes a new event file), the value written last wins.
"""

import io
import os
import pathlib
from typing import Iterator, NamedTuple

import numpy as np
import pandas as pd
from PIL import Image
from tensorboard import data_compat
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util

SPLITS = ("train", "eval", "valid", "test")
COLUMNS = ("step", "split", "name", "value")
EVENT_FILE_GLOB = "events.out.tfevents.*"


class _Value(NamedTuple):
  """One summary value of an event file."""
  wall_time: float
  step: int
  tag: str
  plugin: str
  value: object  # A `Summary.Value` proto, tensor form.


def event_files(workdir: str | os.PathLike) -> list[pathlib.Path]:
  """The event files anywhere under `workdir`, sorted by path.

  Raises:
    FileNotFoundError: if there are none (the message says where it looked).
  """
  root = pathlib.Path(workdir)
  files = sorted(path for path in root.rglob(EVENT_FILE_GLOB)
                 if path.is_file())
  if not files:
    where = "" if root.is_dir() else " (the directory does not exist)"
    raise FileNotFoundError(
        f"No TensorBoard event files ({EVENT_FILE_GLOB}) found under "
        f"{root.resolve()}{where}; searched it and all its subdirectories.")
  return files


def split_tag(tag: str) -> tuple[str, str]:
  """Splits "train_loss" or "train/loss" into ("train", "loss").

  Tags that do not start with one of `SPLITS` and "_" or "/" give ("", tag).
  """
  for split in SPLITS:
    for separator in ("_", "/"):
      prefix = split + separator
      if tag.startswith(prefix) and len(tag) > len(prefix):
        return split, tag[len(prefix):]
  return "", tag


def _values(workdir) -> Iterator[_Value]:
  """All summary values of all event files under `workdir`."""
  for path in event_files(workdir):
    # TF2 writers may attach the plugin metadata to the first value only.
    plugins = {}
    for event in event_file_loader.EventFileLoader(str(path)).Load():
      for value in event.summary.value:
        value = data_compat.migrate_value(value)
        plugin = (value.metadata.plugin_data.plugin_name or
                  plugins.get(value.tag, ""))
        plugins[value.tag] = plugin
        yield _Value(event.wall_time, event.step, value.tag, plugin, value)


def read_metrics(workdir: str | os.PathLike) -> pd.DataFrame:
  """Every logged scalar under `workdir`.

  Returns:
    A DataFrame with columns step (int64), split (str), name (str) and
    value (float64), sorted by split, name and step.
  """
  rows = []
  for item in _values(workdir):
    if item.plugin == "scalars":
      split, name = split_tag(item.tag)
      value = float(tensor_util.make_ndarray(item.value.tensor))
      rows.append((item.wall_time, item.step, split, name, value))
  frame = pd.DataFrame(rows, columns=("wall_time",) + COLUMNS)
  frame = frame.astype({"step": np.int64, "split": str, "name": str,
                        "value": np.float64})
  frame = frame.sort_values("wall_time", kind="stable").drop_duplicates(
      ["split", "name", "step"], keep="last")
  frame = frame.sort_values(["split", "name", "step"], kind="stable")
  return frame[list(COLUMNS)].reset_index(drop=True)


def image_tags(workdir: str | os.PathLike) -> list[str]:
  """The sorted tags of the images logged under `workdir`."""
  return sorted({item.tag for item in _values(workdir)
                 if item.plugin == "images"})


def _decode_images(value) -> list[np.ndarray]:
  """PNGs of an "images" tensor [width, height, png, ...] -> uint8 RGB."""
  encoded = tensor_util.make_ndarray(value.tensor).reshape(-1)[2:]
  return [np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
          for png in encoded]


def read_images(workdir: str | os.PathLike,
                tag: str) -> list[tuple[int, np.ndarray]]:
  """The images logged under `tag`, as (step, uint8 (h, w, 3)) by step.

  A batch logged at one step gives one entry per image, in batch order.

  Raises:
    ValueError: if no image has this tag (the message lists the tags).
  """
  latest = {}  # step -> (wall_time, value)
  tags = set()
  for item in _values(workdir):
    if item.plugin != "images":
      continue
    tags.add(item.tag)
    if item.tag == tag and item.wall_time >= latest.get(
        item.step, (-np.inf,))[0]:
      latest[item.step] = (item.wall_time, item.value)
  if not latest:
    raise ValueError(f"No images with tag {tag!r} under {workdir}; the image "
                     f"tags there are {sorted(tags)}.")
  return [(step, image) for step in sorted(latest)
          for image in _decode_images(latest[step][1])]
