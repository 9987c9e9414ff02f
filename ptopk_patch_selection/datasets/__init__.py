# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""TFDS builders of the project's datasets, and their generators.

Importing this package registers the builders with TFDS (it imports
TensorFlow Datasets):

  import tensorflow_datasets as tfds
  import ptopk_patch_selection.datasets  # registers the builders
  tfds.load("synthetic_traffic_signs/small", data_dir=...)

under the names `synthetic_traffic_signs`, `synthetic_billiard`,
`megapixel_mnist`, `traffic_signs` and `billiard`. CUB-200 is the TFDS catalogue's
`caltech_birds2011`.
"""

from ptopk_patch_selection.datasets.billiard import Billiard
from ptopk_patch_selection.datasets.megapixel_mnist import MegapixelMnist
from ptopk_patch_selection.datasets.synthetic_billiard import SyntheticBilliard
from ptopk_patch_selection.datasets.synthetic_traffic_signs import SyntheticTrafficSigns
from ptopk_patch_selection.datasets.traffic_signs import TrafficSigns

# The TFDS names of the project's builders.
BUILDER_NAMES = tuple(builder.name for builder in (
    Billiard, MegapixelMnist, SyntheticBilliard, SyntheticTrafficSigns,
    TrafficSigns))

__all__ = ["BUILDER_NAMES", "Billiard", "MegapixelMnist", "SyntheticBilliard",
           "SyntheticTrafficSigns", "TrafficSigns"]
