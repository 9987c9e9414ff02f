# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of reading CLU-written scalars and images back from a workdir."""

import re

from clu import metric_writers
import numpy as np
import pandas as pd
import pytest
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.summary.writer import event_file_writer

from ptopk_patch_selection import metrics_io

# Binary fractions: exact in float32, so values must round-trip exactly.
SCALARS = {
    1: {"train_loss": 2.5, "train/sigma": 0.5, "steps_per_sec": 4.0},
    2: {"train_loss": 1.25, "train/sigma": 0.25, "steps_per_sec": 8.0},
}
EVAL_SCALARS = {2: {"eval_accuracy": 0.75, "eval_loss": 1.5}}
IMAGES = np.random.default_rng(0).integers(0, 256, (2, 6, 8, 3), np.uint8)


def write_workdir(workdir) -> None:
  """Scalars at steps 1-2, eval scalars in a subdirectory, images at step 2.

  This is the fixture of the notebook test as well.
  """
  writer = metric_writers.create_default_writer(workdir, asynchronous=False)
  for step, scalars in SCALARS.items():
    writer.write_scalars(step, scalars)
  writer.write_images(2, {"eval_selection": IMAGES})
  writer.close()
  writer = metric_writers.create_default_writer(
      workdir, asynchronous=False, collection="eval")
  for step, scalars in EVAL_SCALARS.items():
    writer.write_scalars(step, scalars)
  writer.close()


@pytest.fixture(name="workdir")
def _workdir(tmp_path):
  write_workdir(tmp_path)
  return tmp_path


def test_read_metrics_returns_exactly_the_logged_scalars(workdir):
  expected = pd.DataFrame(
      [(1, "", "steps_per_sec", 4.0), (2, "", "steps_per_sec", 8.0),
       (2, "eval", "accuracy", 0.75), (2, "eval", "loss", 1.5),
       (1, "train", "loss", 2.5), (2, "train", "loss", 1.25),
       (1, "train", "sigma", 0.5), (2, "train", "sigma", 0.25)],
      columns=metrics_io.COLUMNS)
  pd.testing.assert_frame_equal(metrics_io.read_metrics(workdir), expected,
                                check_dtype=False)
  frame = metrics_io.read_metrics(workdir)
  assert frame["step"].dtype == np.int64
  assert frame["value"].dtype == np.float64


def test_a_rewritten_step_keeps_the_last_value(workdir):
  writer = metric_writers.create_default_writer(workdir, asynchronous=False)
  writer.write_scalars(2, {"train_loss": 0.125})
  writer.close()
  frame = metrics_io.read_metrics(workdir)
  loss = frame[(frame.split == "train") & (frame.name == "loss")]
  assert loss["value"].tolist() == [2.5, 0.125]


def test_old_style_simple_values_are_read(tmp_path):
  writer = event_file_writer.EventFileWriter(str(tmp_path))
  value = summary_pb2.Summary.Value(tag="eval_loss", simple_value=0.375)
  writer.add_event(event_pb2.Event(
      step=7, wall_time=1.0, summary=summary_pb2.Summary(value=[value])))
  writer.close()
  frame = metrics_io.read_metrics(tmp_path)
  assert frame.values.tolist() == [[7, "eval", "loss", 0.375]]


@pytest.mark.parametrize("tag, expected", [
    ("train_loss", ("train", "loss")),
    ("train/loss", ("train", "loss")),
    ("eval_covered_fraction", ("eval", "covered_fraction")),
    ("training_time", ("", "training_time")),
    ("evaluation/loss", ("", "evaluation/loss")),
    ("uptime", ("", "uptime")),
])
def test_split_tag(tag, expected):
  assert metrics_io.split_tag(tag) == expected


def test_read_images_returns_the_logged_pixels(workdir):
  images = metrics_io.read_images(workdir, "eval_selection")
  assert [step for step, _ in images] == [2, 2]
  for (_, image), logged in zip(images, IMAGES):
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, logged)
  assert metrics_io.image_tags(workdir) == ["eval_selection"]


def test_read_images_of_an_unknown_tag_lists_the_tags(workdir):
  with pytest.raises(ValueError, match=r"\['eval_selection'\]"):
    metrics_io.read_images(workdir, "train_selection")


def test_no_event_files_says_where_it_searched(tmp_path):
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(FileNotFoundError,
                     match=re.escape(str(tmp_path.resolve()))):
    metrics_io.read_metrics(tmp_path)
