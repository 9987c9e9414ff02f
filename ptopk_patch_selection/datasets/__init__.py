# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""TFDS builders of the project's datasets, and their generators.

Importing this package is cheap (no TensorFlow). `register_builders()` imports
the builder modules, which registers them with TFDS under the names
`synthetic_traffic_signs`, `synthetic_billiard`, `traffic_signs` and
`billiard`. CUB-200 is the TFDS catalogue's `caltech_birds2011`.
"""

import importlib

BUILDER_MODULES = (
    "synthetic_traffic_signs",
    "synthetic_billiard",
    "traffic_signs",
    "billiard",
)


def register_builders() -> None:
  """Imports every builder module so that TFDS knows their names."""
  for module in BUILDER_MODULES:
    importlib.import_module(f"{__name__}.{module}")
