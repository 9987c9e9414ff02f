# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""`traffic_signs`: the Swedish Traffic Signs (STS) speed-limit task of ATS.

Four classes (EMPTY, 50_SIGN, 70_SIGN, 80_SIGN); train = Set1 (747 images),
test = Set2 (684), 960x1280 JPEGs stored as downloaded (not re-encoded).

Annotation syntax (one line per image of the set's annotations.txt):

  <file name>:<sign>;<sign>;...
  <sign> = <visibility>, <x right>, <y bottom>, <x left>, <y top>, <type>,
           <name>     or     MISC_SIGNS

visibility is VISIBLE, BLURRED, SIDE_ROAD or OCCLUDED; name is e.g. 70_SIGN,
PASS_RIGHT_SIDE. Filter and label (Katharopoulos & Fleuret 2019, "ATS"):
MISC_SIGNS entries are ignored; an image with no sign left is EMPTY; otherwise
among its 50/70/80 signs, ordered by visibility then decreasing area, the
first must be VISIBLE and gives the label, else the image is dropped.

Configs: `ats` keeps images whose only annotation is MISC_SIGNS as EMPTY, as
ATS and the paper do (the 747 / 684 counts); `no_misc` drops them, since
MISC_SIGNS marks unannotated signs that may be speed limits; `released` is
`ats` with the released code's label for an image with several visible speed
signs: the first VISIBLE one in annotation order (its comment said "most
visible"), not the largest. The same images are kept by all but `no_misc`.
"""

import dataclasses
import os
import pathlib
import zipfile
import zlib

import numpy as np
import tensorflow_datasets as tfds

from ptopk_patch_selection import errors
from ptopk_patch_selection.datasets import base

CLASS_NAMES = ("EMPTY", "50_SIGN", "70_SIGN", "80_SIGN")
VISIBILITIES = ("VISIBLE", "BLURRED", "SIDE_ROAD", "OCCLUDED")
IMAGE_SHAPE = (960, 1280, 3)
HOMEPAGE = ("https://www.cvl.isy.liu.se/research/datasets/"
            "traffic-signs-dataset/")
URL = "https://www.isy.liu.se/cvl/research/trafficSigns/swedishSignsSummer"
# Split -> (set folder, image archive).
SPLITS = {"train": ("Set1", "Set1Part0.zip"), "test": ("Set2", "Set2Part0.zip")}


@dataclasses.dataclass(frozen=True)
class Sign:
  visibility: str
  area: float
  name: str


class AnnotationError(errors.BadFileError):
  """An annotation line that does not parse."""


def _download_hint(set_dir: pathlib.Path, file: str) -> str:
  return f"Download {URL}/{set_dir.name}/{file} into {set_dir}/."


def _coordinate(text: str) -> float:
  # A few STS coordinates carry a stray trailing character; ATS strips it.
  for end in (len(text), len(text) - 1):
    try:
      return float(text[:end])
    except ValueError:
      pass
  raise ValueError(f"not a number: {text!r}")


def parse_line(line: str) -> tuple[str, list[Sign]]:
  """(file name, signs other than MISC_SIGNS) of one annotation line."""
  name, sep, rest = line.partition(":")
  if not sep or not name.strip():
    raise ValueError("expected '<file name>:<signs>'")
  signs = []
  for entry in rest.split(";"):
    fields = [f.strip() for f in entry.split(",")]
    if fields == [""] or fields[0] == "MISC_SIGNS":
      continue
    if len(fields) != 7 or fields[0] not in VISIBILITIES:
      raise ValueError(f"bad sign {entry.strip()!r}: expected <visibility>, "
                       "4 coordinates, <type>, <name>")
    x1, y1, x0, y0 = (_coordinate(f) for f in fields[1:5])
    signs.append(Sign(fields[0], abs((x1 - x0) * (y1 - y0)), fields[6]))
  return name.strip(), signs


def parse_annotations(path: pathlib.Path) -> list[tuple[str, list[Sign], bool]]:
  """(file name, signs, has MISC_SIGNS) per line of an annotations.txt.

  Raises:
    AnnotationError: naming the file and line number of a line that does not
      parse, and where to download the file again.
  """
  out = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      name, signs = parse_line(line)
    except ValueError as e:
      raise AnnotationError(f"{path}:{number}: {e}: {line!r}. "
                            f"{_download_hint(path.parent, path.name)}"
                           ) from None
    out.append((name, signs, "MISC_SIGNS" in line))
  return out


def label_of(signs: list[Sign], has_misc: bool, misc_only_is_empty: bool,
             first_in_order: bool = False) -> int | None:
  """The class of an image, or None when the filter drops it.

  first_in_order: the label is the first VISIBLE speed sign in annotation
  order (released), not the ATS order by visibility then decreasing area.
  """
  if not signs:
    return 0 if misc_only_is_empty or not has_misc else None
  speed = [s for s in signs if s.name in CLASS_NAMES[1:]]
  if first_in_order:
    speed = [s for s in speed if s.visibility == "VISIBLE"]
  else:
    speed.sort(key=lambda s: (VISIBILITIES.index(s.visibility), -s.area))
  if not speed or speed[0].visibility != "VISIBLE":
    return None
  return CLASS_NAMES.index(speed[0].name)


def _image_reader(set_dir: pathlib.Path, archive: str):
  """A function file name -> checked JPEG bytes, from the zip or the files.

  Its errors name the zip or file and where to download the zip again.
  """
  zip_path = set_dir / archive
  remedy = _download_hint(set_dir, archive)
  if zip_path.exists():
    try:
      zf = zipfile.ZipFile(zip_path.open("rb"))
    except zipfile.BadZipFile as e:
      raise errors.BadFileError(f"{zip_path} is not a readable zip, perhaps "
                                f"truncated ({e}). {remedy}") from e
    members = {os.path.basename(n): n for n in zf.namelist()}
    source = f"{zip_path}"
    read = lambda name: zf.read(members[name])
    locate = lambda name: f"{zip_path}:{members[name]}"
  else:
    members = {p.name: p for p in set_dir.rglob("*.jpg")}
    source = f"{set_dir}"
    read = lambda name: members[name].read_bytes()
    locate = lambda name: str(members[name])

  def reader(name):
    if name not in members:
      raise errors.MissingFileError(
          f"Image {name} of {set_dir}/annotations.txt is not in {source}. "
          f"{remedy}")
    try:
      data = read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
      raise errors.BadFileError(f"{locate(name)} is damaged ({e}). "
                                f"{remedy}") from e
    check_image(data, locate(name), remedy)
    return data
  return reader


def check_image(data: bytes, name: str, remedy: str) -> None:
  """Raises errors.BadFileError unless `data` is a 960x1280 RGB JPEG.

  The message names `name`, then says `remedy`.
  """
  image = base.open_image(data, name, remedy)
  shape = np.asarray(image).shape
  if image.format != "JPEG" or shape != IMAGE_SHAPE:
    raise errors.BadFileError(
        f"Image {name} is a {image.format} of shape {shape}; expected a JPEG "
        f"of {IMAGE_SHAPE}. {remedy}")


@dataclasses.dataclass(eq=False)
class TrafficSignsConfig(tfds.core.BuilderConfig):
  misc_only_is_empty: bool = True
  first_in_order: bool = False  # label_of's rule for several speed signs


class TrafficSigns(base.ProjectBuilder):
  """Swedish Traffic Signs, 4 speed-limit classes (ATS filter)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      TrafficSignsConfig(name="ats", description="MISC_SIGNS-only = EMPTY."),
      TrafficSignsConfig(name="no_misc", misc_only_is_empty=False,
                         description="MISC_SIGNS-only images dropped."),
      TrafficSignsConfig(name="released", first_in_order=True,
                         description="ats, labelled by the first visible "
                         "speed sign in annotation order (released code)."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = "\n".join(
      f"  {URL}/{folder}/{f}  ->  <manual_dir>/{folder}/{f}"
      for folder, archive in SPLITS.values()
      for f in ("annotations.txt", archive)) + (
          "\n  (a zip may also be extracted in place)")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=IMAGE_SHAPE,
                                         encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "file_name": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        homepage=HOMEPAGE,
    )

  def _split_generators(self, dl_manager):
    manual_dir = base.manual_dir(dl_manager, ", ".join(
        f"{folder}/{f}" for folder, archive in SPLITS.values()
        for f in ("annotations.txt", archive)) + f" from {URL}/")
    for folder, archive in SPLITS.values():
      set_dir = manual_dir / folder
      if not (set_dir / "annotations.txt").exists():
        missing = "annotations.txt"
      elif not ((set_dir / archive).exists() or any(set_dir.rglob("*.jpg"))):
        missing = archive
      else:
        continue
      raise errors.MissingFileError(
          f"Missing {set_dir / missing}. {_download_hint(set_dir, missing)}"
          f"\nAll files:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return {split: self._generate_examples(manual_dir / folder, archive)
            for split, (folder, archive) in SPLITS.items()}

  def _generate_examples(self, set_dir: pathlib.Path, archive: str):
    read = _image_reader(set_dir, archive)
    path = set_dir / "annotations.txt"
    annotations = parse_annotations(path)
    config = self.builder_config
    kept = 0
    for name, signs, has_misc in annotations:
      label = label_of(signs, has_misc, config.misc_only_is_empty,
                       config.first_in_order)
      if label is None:
        continue
      kept += 1
      yield name, {"image": read(name), "label": label, "file_name": name}
    # Else TFDS stops with 'No examples were yielded', naming no file.
    if not annotations:
      raise errors.BadFileError(
          f"{path} has no annotation line: expected one "
          f"'<file name>:<signs>' line per image. "
          f"{_download_hint(set_dir, path.name)}")
    if not kept:
      raise errors.BadFileError(
          f"None of the {len(annotations)} images of {path} passes the "
          f"{config.name!r} filter: expected images with no sign or with a "
          "VISIBLE 50_SIGN, 70_SIGN or 80_SIGN. "
          f"{_download_hint(set_dir, path.name)}")
