# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""`billiard`: the paper's rendered billiard scenes (relational reasoning).

Reads the authors' archive from the manual dir, either as downloaded
(billiard.tar.xz, extracted once into the TFDS download folder) or already
extracted: folders train/, valid/, test/ of `<id>.png` (RGB or RGBA; alpha is
dropped) + `<id>.json` (a list of balls with "position", "number", "color"),
anywhere below the manual dir. Examples keep their numeric id order.

Configs are the label functions of `billiard_labels` (`max-left-right`, the
paper's task, first).
"""

import dataclasses
import io
import json
import lzma
import pathlib
import shutil
import tarfile
import numpy as np
import tensorflow_datasets as tfds

from ptopk_patch_selection import errors
from ptopk_patch_selection.datasets import base
from ptopk_patch_selection.datasets import billiard_labels

URL = ("http://storage.googleapis.com/gresearch/ptokp_patch_selection/"
       "billiard.tar.xz")
ARCHIVE = "billiard.tar.xz"
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(eq=False)
class BilliardConfig(tfds.core.BuilderConfig):
  label_function: str = "max-left-right"


def find_split_dirs(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """{split: folder} for the train/valid/test folders of PNGs below root."""
  found = {}
  for split in SPLITS:
    candidates = sorted(p for p in root.rglob(split)
                        if p.is_dir() and any(p.glob("*.png")))
    if candidates:
      found[split] = candidates[0]
  return found


def rgb_png(data: bytes, name: str, remedy: str) -> bytes:
  """`data` if it is an RGB PNG, else re-encoded as one.

  A corrupt image raises errors.BadFileError naming `name`, then `remedy`.
  """
  image = base.open_image(data, name, remedy)
  if image.format == "PNG" and image.mode == "RGB":
    return data
  buf = io.BytesIO()
  image.convert("RGB").save(buf, format="PNG")
  return buf.getvalue()


def _extract(archive: pathlib.Path, download_dir: pathlib.Path) -> pathlib.Path:
  """Extracts `archive` once into download_dir/extracted/ (TFDS has no xz).

  All or nothing: it is extracted next to its destination and renamed at the
  end. A member that would land or link outside the destination (or a device
  file), or a damaged archive, stops it with an error naming the archive and
  the member, and leaves nothing extracted.
  """
  target = download_dir / "extracted" / archive.name
  if target.exists():
    return target
  partial = target.with_name(target.name + ".incomplete")
  shutil.rmtree(partial, ignore_errors=True)
  partial.mkdir(parents=True)
  redownload = f"Download {URL} again into {archive.parent}/."

  def data_filter(member: tarfile.TarInfo, destination: str):
    try:
      return tarfile.data_filter(member, destination)
    except tarfile.FilterError as e:
      raise errors.BadFileError(
          f"Refusing to extract {archive}: its member {member.name!r} is "
          f"unsafe ({e}). It is not the authors' archive: {redownload}"
      ) from e

  try:
    with tarfile.open(archive, "r:xz") as tar:
      tar.extractall(partial, filter=data_filter)
    partial.rename(target)
  except (tarfile.TarError, lzma.LZMAError, EOFError) as e:
    raise errors.BadFileError(f"{archive} is truncated or damaged ({e}). "
                              f"{redownload}") from e
  finally:
    shutil.rmtree(partial, ignore_errors=True)  # gone if renamed
  return target


class Billiard(base.ProjectBuilder):
  """Billiard scenes; label = a function of the balls' numbers and places."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      BilliardConfig(name=name, label_function=name,
                     description=billiard_labels.LABEL_FUNCTIONS[name].__doc__)
      for name in billiard_labels.LABEL_FUNCTIONS
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"  {URL}  ->  <manual_dir>/{ARCHIVE}\n"
      "  (or its extracted train/, valid/, test/ folders below <manual_dir>)")

  def _info(self) -> tfds.core.DatasetInfo:
    name = self.builder_config.label_function
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3),
                                         encoding_format="png"),
            "label": tfds.features.ClassLabel(
                num_classes=billiard_labels.NUM_CLASSES[name]),
            "id": tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    manual_dir = base.manual_dir(
        dl_manager, f"{ARCHIVE} from {URL}, or its extracted train/, valid/ "
        "and test/ folders")
    archive = manual_dir / ARCHIVE
    if archive.exists():
      root = _extract(archive, pathlib.Path(dl_manager.download_dir))
      where = f"{archive} (extracted to {root})"
      remedy = (f"Download {URL} again into {manual_dir}/ and delete {root} "
                "before building again.")
    else:
      root, where = manual_dir, f"{manual_dir} (no {ARCHIVE} there)"
      remedy = f"Download {URL} into {manual_dir}/."
    dirs = find_split_dirs(root)
    missing = [s for s in SPLITS if s not in dirs]
    if missing:
      raise errors.MissingFileError(
          f"{where} has no folders {missing} of <id>.png + <id>.json. "
          f"{remedy}")
    return {split: self._generate_examples(dirs[split], remedy)
            for split in SPLITS}

  def _generate_examples(self, folder: pathlib.Path, remedy: str):
    label_fn = billiard_labels.LABEL_FUNCTIONS[
        self.builder_config.label_function]
    for index in sorted(int(p.stem) for p in folder.glob("*.png")):
      png, annotation = folder / f"{index}.png", folder / f"{index}.json"
      if not annotation.exists():
        raise errors.MissingFileError(
            f"{png} has no annotation {annotation}. {remedy}")
      try:
        balls = json.loads(annotation.read_text())
        label = label_fn(balls)
      except (ValueError, KeyError, IndexError, TypeError) as e:
        raise errors.BadFileError(
            f"Bad annotation {annotation}: {e}. {remedy}") from e
      yield index, {"image": rgb_png(png.read_bytes(), str(png), remedy),
                    "label": label, "id": index}
