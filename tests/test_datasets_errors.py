# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Builders on bad input: clear errors, nothing written half-way."""

import io
import os
import shutil
import tarfile

import pytest
import tensorflow_datasets as tfds

from ptopk_patch_selection import errors
from ptopk_patch_selection.datasets import billiard
from ptopk_patch_selection.datasets import traffic_signs

_DUMMY = os.path.join(os.path.dirname(traffic_signs.__file__), "dummy_data")


def _build(name, data_dir, manual_dir):
  builder = tfds.builder(name, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir)))
  return builder


def _copy_dummy(tmp_path, name):
  return shutil.copytree(os.path.join(_DUMMY, name), tmp_path / "manual")


ATS_LABELS = {
    "1277381550Image000009.jpg": 2,  # VISIBLE 70 among other signs
    "1277381560Image000019.jpg": 0,  # no sign
    "1277381601Image000004.jpg": 0,  # only MISC_SIGNS
    "1277381650Image000012.jpg": 1,  # largest VISIBLE speed sign: 50
    "1277382111Image000001.jpg": 3,
    "1277382144Image000004.jpg": 0,
    "1277382155Image000005.jpg": 1,
}


@pytest.mark.parametrize("config,expected", [
    ("ats", ATS_LABELS),
    # The first VISIBLE speed sign of 1277381650Image000012's line is an 80.
    ("released", ATS_LABELS | {"1277381650Image000012.jpg": 3}),
])
def test_traffic_signs_labels_follow_the_ats_filter(tmp_path, config,
                                                    expected):
  builder = _build(f"traffic_signs/{config}", tmp_path / "tfds",
                   os.path.join(_DUMMY, "traffic_signs"))
  labels = {}
  for split in ("train", "test"):
    source = builder.as_data_source(split=split)
    labels.update({ex["file_name"].decode(): int(ex["label"]) for ex in source})
  assert labels == expected


def test_released_label_is_the_first_visible_speed_sign_of_the_line():
  """Two visible speed signs: ATS takes the largest, released the first."""
  line = ("a.jpg:BLURRED, 300, 300, 0, 0, PROHIBITORY, 80_SIGN;"
          "VISIBLE, 10, 10, 0, 0, PROHIBITORY, 70_SIGN;"
          "VISIBLE, 100, 100, 0, 0, PROHIBITORY, 50_SIGN;MISC_SIGNS")
  _, signs = traffic_signs.parse_line(line)
  assert traffic_signs.label_of(signs, True, True) == 1  # 50: largest
  assert traffic_signs.label_of(signs, True, True, first_in_order=True) == 2
  blurred_only = signs[:1]  # dropped under both rules
  assert traffic_signs.label_of(blurred_only, False, True) is None
  assert traffic_signs.label_of(blurred_only, False, True, True) is None
  configs = {c.name: c for c in traffic_signs.TrafficSigns.BUILDER_CONFIGS}
  assert configs["released"].first_in_order
  assert configs["released"].misc_only_is_empty
  assert not configs["ats"].first_in_order


def test_missing_manual_file_names_file_and_url(tmp_path):
  manual = _copy_dummy(tmp_path, "traffic_signs")
  os.remove(manual / "Set1" / "Set1Part0.zip")
  with pytest.raises(FileNotFoundError) as error:
    _build("traffic_signs", tmp_path / "tfds", manual)
  assert "Set1Part0.zip" in str(error.value)
  assert f"{traffic_signs.URL}/Set1/Set1Part0.zip" in str(error.value)
  other = tmp_path / "other"
  other.mkdir()
  (other / "notes.txt").write_text("not the archive")
  with pytest.raises(FileNotFoundError, match="billiard.tar.xz") as error:
    _build("billiard", tmp_path / "tfds", other)
  assert billiard.URL in str(error.value) and str(other) in str(error.value)


def test_bad_annotation_line_names_file_and_line(tmp_path):
  manual = _copy_dummy(tmp_path, "traffic_signs")
  path = manual / "Set2" / "annotations.txt"
  lines = path.read_text().splitlines()
  lines[2] = "1277382133Image000003.jpg:VISIBLE, 1.0, 2.0, PROHIBITORY"
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(traffic_signs.AnnotationError,
                     match=r"Set2/annotations.txt:3") as error:
    _build("traffic_signs", tmp_path / "tfds", manual)
  assert (f"Download {traffic_signs.URL}/Set2/annotations.txt into "
          f"{manual / 'Set2'}/.") in str(error.value)


def test_truncated_zip_names_it_and_its_url(tmp_path):
  manual = _copy_dummy(tmp_path, "traffic_signs")
  path = manual / "Set1" / "Set1Part0.zip"
  os.truncate(path, os.path.getsize(path) // 2)
  with pytest.raises(errors.BadFileError, match="not a readable zip") as error:
    _build("traffic_signs", tmp_path / "tfds", manual)
  assert str(path) in str(error.value)
  assert (f"Download {traffic_signs.URL}/Set1/Set1Part0.zip into "
          f"{manual / 'Set1'}/.") in str(error.value)


@pytest.mark.parametrize("name, image, url", [
    ("traffic_signs", "Set2/Set2Part0/1277382144Image000004.jpg",
     f"{traffic_signs.URL}/Set2/Set2Part0.zip"),
    ("billiard", "billiard/test/1.png", billiard.URL)])
def test_corrupt_image_names_the_file_and_leaves_nothing(tmp_path, name,
                                                         image, url):
  manual = _copy_dummy(tmp_path, name)
  data = (manual / image).read_bytes()
  (manual / image).write_bytes(data[:len(data) // 3])
  with pytest.raises(errors.BadFileError) as error:
    _build(name, tmp_path / "tfds", manual)
  assert str(manual / image) in str(error.value)
  assert f"Download {url}" in str(error.value)
  builder = tfds.builder(name, data_dir=str(tmp_path / "tfds"))
  assert not builder.is_prepared()
  # download=False: else TFDS tries to build it again from its default
  # (empty) manual folder, and fails for that reason instead.
  with pytest.raises(KeyError, match="has not been generated yet"):
    tfds.data_source(name, split="train", data_dir=str(tmp_path / "tfds"),
                     download=False)


def _assert_one_line(error, *parts):
  message = str(error.value)
  assert "\n" not in message, message
  for part in parts:
    assert part in message, message


@pytest.mark.parametrize("annotations, problem", [
    ("", "has no annotation line: expected one '<file name>:<signs>' line "
     "per image."),
    ("\n  \n", "has no annotation line"),
    # Both images are dropped by the ATS filter: blurred, then side-road 50.
    ("1277381630Image000004.jpg:BLURRED, 1000.90, 387.77, 941.73, 333.81, "
     "PROHIBITORY, 50_SIGN;\n"
     "1277381640Image000011.jpg:SIDE_ROAD, 500.03, 300.00, 470.10, 270.51, "
     "PROHIBITORY, 70_SIGN;\n",
     "None of the 2 images of {path} passes the 'ats' filter: expected "
     "images with no sign or with a VISIBLE 50_SIGN, 70_SIGN or 80_SIGN."),
], ids=["empty", "blank lines", "all filtered out"])
def test_a_split_with_no_example_names_its_annotation_file(
    tmp_path, annotations, problem):
  manual = _copy_dummy(tmp_path, "traffic_signs")
  path = manual / "Set1" / "annotations.txt"
  path.write_text(annotations)
  with pytest.raises(errors.BadFileError) as error:
    _build("traffic_signs", tmp_path / "tfds", manual)
  _assert_one_line(error, str(path), problem.format(path=path),
                   f"Download {traffic_signs.URL}/Set1/annotations.txt into "
                   f"{manual / 'Set1'}/.")
  assert "No examples were yielded" not in str(error.value)
  assert not tfds.builder("traffic_signs",
                          data_dir=str(tmp_path / "tfds")).is_prepared()


@pytest.mark.parametrize("name, expected", [
    ("traffic_signs", "expected Set1/annotations.txt, Set1/Set1Part0.zip, "
     "Set2/annotations.txt, Set2/Set2Part0.zip from "
     f"{traffic_signs.URL}/ there."),
    ("billiard", f"expected billiard.tar.xz from {billiard.URL}, or its "
     "extracted train/, valid/ and test/ folders there."),
])
def test_an_empty_manual_folder_is_named_in_one_line(tmp_path, name,
                                                     expected):
  manual = tmp_path / "manual"
  manual.mkdir()
  with pytest.raises(errors.MissingFileError) as error:
    _build(name, tmp_path / "tfds", manual)
  _assert_one_line(error, f"{manual} is missing or empty: {expected}")
  with pytest.raises(errors.MissingFileError, match="is missing or empty"):
    _build(name, tmp_path / "tfds", tmp_path / "nowhere")


def test_billiard_reads_the_tar_xz_archive(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  shutil.make_archive(str(manual / "billiard"), "xztar",
                      os.path.join(_DUMMY, "billiard"), "billiard")
  builder = _build("billiard/rightmost-number", tmp_path / "tfds", manual)
  assert builder.info.splits["train"].num_examples == 3


def _billiard_archive(path, member: tarfile.TarInfo | None = None):
  """The dummy billiard folders as a tar.xz, then `member` (if any)."""
  with tarfile.open(path, "w:xz") as tar:
    tar.add(os.path.join(_DUMMY, "billiard", "billiard"), arcname="billiard")
    if member is not None:
      tar.addfile(member, io.BytesIO(b"x" * member.size))


def _member(name, kind=tarfile.REGTYPE, linkname="", size=0):
  member = tarfile.TarInfo(name)
  member.type, member.linkname, member.size = kind, linkname, size
  return member


def _everything_below(root):
  return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
          for p in root.rglob("*")}


# Extracted to tmp_path/data/tfds/downloads/extracted/<archive>.incomplete:
# five levels up is tmp_path, outside the data folder.
@pytest.mark.parametrize("member", [
    _member("billiard/" + "../" * 6 + "escaped.txt", size=3),
    _member("billiard/absolute_link", tarfile.SYMTYPE, "/etc/passwd"),
    _member("billiard/train/link", tarfile.SYMTYPE,
            "../" * 7 + "outside.txt"),
    _member("billiard/hard_link", tarfile.LNKTYPE, "../" * 5 + "outside.txt"),
], ids=["escaping path", "absolute link", "link out", "hard link out"])
def test_unsafe_archive_member_is_refused_and_nothing_is_extracted(
    tmp_path, member):
  data = tmp_path / "data"
  manual = data / "manual"
  manual.mkdir(parents=True)
  archive = manual / billiard.ARCHIVE
  _billiard_archive(archive, member)
  (tmp_path / "outside.txt").write_text("not yours")
  outside = {name: content for name, content in
             _everything_below(tmp_path).items()
             if not name.startswith("data")}
  with pytest.raises(errors.BadFileError) as error:
    _build("billiard", data / "tfds", manual)
  message = str(error.value)
  assert str(archive) in message and repr(member.name) in message
  assert f"Download {billiard.URL} again into {manual}/." in message
  assert {name: content for name, content in
          _everything_below(tmp_path).items()
          if not name.startswith("data")} == outside
  assert not list((data / "tfds").rglob("extracted/*"))


def test_truncated_archive_is_refused_and_nothing_is_extracted(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  archive = manual / billiard.ARCHIVE
  _billiard_archive(archive)
  os.truncate(archive, os.path.getsize(archive) // 2)
  with pytest.raises(errors.BadFileError, match="truncated or damaged") as e:
    _build("billiard", tmp_path / "tfds", manual)
  assert str(archive) in str(e.value) and billiard.URL in str(e.value)
  assert not list((tmp_path / "tfds").rglob("extracted/*"))
