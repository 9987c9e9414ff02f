# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""TFDS builder base for the procedural datasets, with parallel generation.

A generator module provides a TensorFlow-free function
`make_example(spec, seed, split_index, index) -> dict` that returns one TFDS
example (encoded image bytes, label, objects) as a pure function of its
arguments. `SyntheticBuilder` runs it over every index of every split in
worker processes ("spawn": workers import only PIL and numpy) and yields the
examples in index order, so the output does not depend on the worker count.
TFDS shows the progress bar ("Generating train examples...") and writes to a
temporary folder that it renames only once every split is written, so an
interrupted or failed build leaves nothing that loads.
"""

import dataclasses
import functools
import multiprocessing
import os
import time
from typing import Any, Callable, Iterable, Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from ptopk_patch_selection.datasets import base

# Below this many examples a split is generated in-process (tests, tiny).
_MIN_EXAMPLES_FOR_WORKERS = 64


def split_workers(num_examples: int) -> int | None:
  """parallel_map's num_workers for a split: every core, or none if small."""
  return None if num_examples >= _MIN_EXAMPLES_FOR_WORKERS else 0


def parallel_map(fn: Callable[[int], Any], items: Iterable[int], *,
                 num_workers: int | None = None,
                 initializer: Callable[..., None] | None = None,
                 initargs: tuple[Any, ...] = ()) -> Iterator[Any]:
  """fn(item) for each item, in order, computed in `num_workers` processes.

  Args:
    fn: a picklable function (module level or a functools.partial of one).
    items: the inputs.
    num_workers: worker processes; None means os.cpu_count(); 0 or 1 runs in
      this process.
    initializer: called as initializer(*initargs) once in each worker (or
      here, without workers) before fn: sends large shared inputs once per
      process instead of with every item.
    initargs: its arguments (picklable).

  Yields:
    fn(item) in the order of `items`.
  """
  num_workers = os.cpu_count() if num_workers is None else num_workers
  if num_workers <= 1:
    if initializer is not None:
      initializer(*initargs)
    yield from map(fn, items)
    return
  context = multiprocessing.get_context("spawn")
  with context.Pool(num_workers, initializer, initargs) as pool:
    yield from pool.imap(fn, items, chunksize=4)


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  """A procedural dataset configuration.

  Attributes:
    spec: the generator's scene specification (a frozen dataclass).
    split_sizes: ((split name, number of examples), ...).
    seed: generation seed; examples are a pure function of (seed, split,
      index).
    scorer_downscale: the downscaling factor at which the deciding numbers are
      meant to be unreadable (data/README.md, readability).
  """
  spec: Any = None
  split_sizes: tuple[tuple[str, int], ...] = ()
  seed: int = 0
  scorer_downscale: int = 8


class SyntheticBuilder(base.ProjectBuilder, skip_registration=True):
  """Generates every split of a `SyntheticConfig` with `make_example`."""

  # Set by subclasses: their module-level example function, and the
  # ClassLabel keyword arguments (names=... or num_classes=...).
  make_example: Callable[..., dict[str, Any]]
  label_kwargs: dict[str, Any]

  def _info(self) -> tfds.core.DatasetInfo:
    """JPEG image, label, and one box, number and is_target per object."""
    spec = self.builder_config.spec
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(spec.height, spec.width, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(**self.label_kwargs),
            "objects": tfds.features.Sequence({
                "bbox": tfds.features.BBoxFeature(),
                "number": tfds.features.Tensor(shape=(), dtype=np.int32),
                "is_target": tfds.features.Tensor(shape=(), dtype=np.bool_),
            }),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {
        name: self._generate_examples(split_index, size)
        for split_index, (name, size) in enumerate(
            self.builder_config.split_sizes)
    }

  def _generate_examples(self, split_index: int, num_examples: int):
    config = self.builder_config
    fn = functools.partial(type(self).make_example, config.spec, config.seed,
                           split_index)
    start = time.time()
    for index, example in enumerate(parallel_map(
        fn, range(num_examples), num_workers=split_workers(num_examples))):
      yield index, example
    logging.info("Generated %d examples of %s/%s split %d in %.1f s.",
                 num_examples, self.name, config.name, split_index,
                 time.time() - start)
