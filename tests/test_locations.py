# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The root of relative config paths, and configs loaded by path."""

import pathlib

from configs import default
from ptopk_patch_selection import locations

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_root_is_the_checkout_unless_ptopk_root_is_set(monkeypatch, tmp_path):
  monkeypatch.delenv(locations.ROOT_ENV, raising=False)
  assert locations.checkout() == locations.root() == REPO
  monkeypatch.setenv(locations.ROOT_ENV, str(tmp_path))
  assert locations.root() == tmp_path


def test_root_of_an_installed_package_is_the_current_directory(
    monkeypatch, tmp_path):
  monkeypatch.delenv(locations.ROOT_ENV, raising=False)
  site = tmp_path / "site-packages"
  monkeypatch.setattr(locations, "__file__",
                      str(site / "ptopk_patch_selection" / "locations.py"))
  monkeypatch.chdir(tmp_path)
  assert locations.checkout() == locations.root() == tmp_path


def test_resolve_keeps_absolute_paths_and_urls(monkeypatch, tmp_path):
  monkeypatch.setenv(locations.ROOT_ENV, str(tmp_path))
  assert locations.resolve("data/tfds") == str(tmp_path / "data" / "tfds")
  assert locations.resolve("/elsewhere/tfds") == "/elsewhere/tfds"
  assert locations.resolve("gs://bucket/tfds") == "gs://bucket/tfds"
  assert locations.resolve("~/tfds") == str(pathlib.Path.home() / "tfds")


def test_sibling_config_loads_the_file_beside(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  loaded = locations.sibling_config(str(REPO / "configs" / "test.py"),
                                    "default")
  assert loaded.__file__ == str(REPO / "configs" / "default.py")
  assert loaded.get_config().to_dict() == default.get_config().to_dict()
