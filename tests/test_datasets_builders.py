# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""TFDS builder tests on dummy data in the real on-disk formats."""

import os

import tensorflow_datasets as tfds

from ptopk_patch_selection.datasets import billiard
from ptopk_patch_selection.datasets import synthetic_billiard
from ptopk_patch_selection.datasets import synthetic_traffic_signs
from ptopk_patch_selection.datasets import traffic_signs

_DUMMY = os.path.join(os.path.dirname(traffic_signs.__file__), "dummy_data")


def _tfrecord(cls):
  """`cls` writing TFRecord files, which TFDS's test case reads with tf.data."""
  namespace = {"name": cls.name, "FILE_FORMAT": "tfrecord",
               "__module__": cls.__module__}
  return type(cls.__name__, (cls,), namespace, skip_registration=True)


class TrafficSignsTest(tfds.testing.DatasetBuilderTestCase):
  """Set1 keeps 4 of 6 annotated images, Set2 3 of 5 (ATS filter)."""
  DATASET_CLASS = _tfrecord(traffic_signs.TrafficSigns)
  BUILDER_CONFIG_NAMES_TO_TEST = ["ats"]
  EXAMPLE_DIR = os.path.join(_DUMMY, "traffic_signs")
  SPLITS = {"train": 4, "test": 3}


class TrafficSignsNoMiscTest(tfds.testing.DatasetBuilderTestCase):
  """The MISC_SIGNS-only image of Set1 is dropped."""
  DATASET_CLASS = _tfrecord(traffic_signs.TrafficSigns)
  BUILDER_CONFIG_NAMES_TO_TEST = ["no_misc"]
  EXAMPLE_DIR = os.path.join(_DUMMY, "traffic_signs")
  SPLITS = {"train": 3, "test": 3}


class BilliardTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = _tfrecord(billiard.Billiard)
  BUILDER_CONFIG_NAMES_TO_TEST = ["max-left-right", "sum-all-modulo10"]
  EXAMPLE_DIR = os.path.join(_DUMMY, "billiard")
  SPLITS = {"train": 3, "valid": 2, "test": 2}


class SyntheticTrafficSignsTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = _tfrecord(synthetic_traffic_signs.SyntheticTrafficSigns)
  BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
  EXAMPLE_DIR = _DUMMY
  SPLITS = {"train": 16, "test": 8}


class SyntheticBilliardTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = _tfrecord(synthetic_billiard.SyntheticBilliard)
  BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
  EXAMPLE_DIR = _DUMMY
  SPLITS = {"train": 18, "valid": 9, "test": 9}


if __name__ == "__main__":
  tfds.testing.test_main()
