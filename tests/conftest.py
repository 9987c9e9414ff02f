# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Test set-up: 4 CPU devices (set before jax loads), no GPU for TensorFlow."""

import contextlib
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


def pytest_collection_modifyitems(config, items):
  """Deselects the tests marked `install` unless -m names that marker.

  They install packages from the package index into a new virtual
  environment: `./run.sh test -m install` runs them. Deselected, not
  skipped, so that a default run ends with no skips.
  """
  if "install" in (config.getoption("markexpr") or ""):
    return
  kept, deselected = [], []
  for item in items:
    (deselected if item.get_closest_marker("install") else kept).append(item)
  if deselected:
    config.hook.pytest_deselected(items=deselected)
    items[:] = kept


@pytest.fixture(scope="session")
def tiny_traffic_data_dir(tmp_path_factory) -> str:
  """synthetic_traffic_signs/tiny (16 train, 8 test, 128x128), built once."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import ptopk_patch_selection.datasets  # pylint: disable=g-import-not-at-top,unused-import
  path = tmp_path_factory.mktemp("tfds")
  tfds.builder("synthetic_traffic_signs/tiny",
               data_dir=str(path)).download_and_prepare()
  return str(path)


@contextlib.contextmanager
def _most_optimizations_disabled():
  import jax  # pylint: disable=g-import-not-at-top
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="module")
def fast_compile():
  """Cheap XLA compiles for tiny shapes; restored after the module.

  Opt in with `pytestmark = pytest.mark.usefixtures("fast_compile")`.
  """
  with _most_optimizations_disabled():
    yield


@pytest.fixture
def fast_compile_one_test():
  """The same for one test, in a module whose other tests compile fully."""
  with _most_optimizations_disabled():
    yield
