# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The base of the project's TFDS builders.

Two defaults differ from `tfds.core.GeneratorBasedBuilder`:
  * datasets are written as ArrayRecord, the random-access format that
    `tfds.data_source` and the input pipeline read;
  * `code_path` is the builder's source file. TFDS 4.9.10 otherwise probes
    `importlib_resources`, which current `etils` no longer installs, and fails
    for any builder defined outside the TFDS package.
"""

import contextlib
import inspect
import io
import os
import pathlib

from absl import logging
from etils import epath
from PIL import Image
import tensorflow_datasets as tfds

from ptopk_patch_selection import errors

FILE_FORMAT = "array_record"


class ProjectBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """GeneratorBasedBuilder writing ArrayRecord files by default."""

  FILE_FORMAT = FILE_FORMAT  # tests override it: TFDS's test case needs tf.data

  def __init__(self, *, file_format: str | None = None, **kwargs):
    super().__init__(file_format=file_format or self.FILE_FORMAT, **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))


def is_built(builder: tfds.core.DatasetBuilder) -> bool:
  """`builder.is_prepared()`, without TFDS's warning about the version folder.

  For a dataset not built yet, `is_prepared` logs that its version folder
  `<data_dir>/<name>/<config>/<version>/` has no dataset_info.json, whether
  the folder exists or not: noise before a first build, and before the input
  pipeline's own error that says how to build.
  """
  with _absl_verbosity(logging.ERROR):
    return builder.is_prepared()


@contextlib.contextmanager
def _absl_verbosity(level: int):
  before = logging.get_verbosity()
  logging.set_verbosity(level)
  try:
    yield
  finally:
    logging.set_verbosity(before)


def manual_dir(dl_manager: tfds.download.DownloadManager,
               expected: str) -> pathlib.Path:
  """`dl_manager.manual_dir`; a missing or empty one stops in one line.

  TFDS's own error there is an AssertionError followed by the download
  instructions over several lines; this one names the folder and says
  `expected`, what should be in it.
  """
  try:
    return pathlib.Path(dl_manager.manual_dir)
  except AssertionError:
    folder = getattr(dl_manager, "_manual_dir", None) or "The manual folder"
    raise errors.MissingFileError(
        f"{folder} is missing or empty: expected {expected} there."
    ) from None


def download_instructions(builder: tfds.core.DatasetBuilder,
                          manual_dir: str) -> str | None:
  """What to download by hand and where, or None if the builder needs nothing.

  The builder reads its downloads from <manual_dir>/<builder name>/. A
  builder with MANUAL_DOWNLOAD_OPTIONAL = True reads them if present and
  builds without them (megapixel_mnist), so it needs nothing.
  """
  if getattr(builder, "MANUAL_DOWNLOAD_OPTIONAL", False):
    return None
  instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
  return instructions and instructions.replace(
      "<manual_dir>", os.path.join(manual_dir, builder.name))


def open_image(data: bytes, name: str, remedy: str) -> Image.Image:
  """Decodes image bytes.

  Args:
    data: the encoded image.
    name: where it comes from (a full path, or an archive and a member).
    remedy: what to do if it is corrupt, e.g. where to download it again.

  Returns:
    The decoded image.

  Raises:
    errors.BadFileError: a corrupt image; the message has `name` and `remedy`.
  """
  try:
    image = Image.open(io.BytesIO(data))
    image.load()
  except (OSError, SyntaxError) as e:
    raise errors.BadFileError(f"Corrupt image {name}: {e}. {remedy}") from e
  return image
