# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""A run's workdir besides its checkpoints: config.json and pictures/.

  <workdir>/config.json    the run's config (`save_config`, `load_config`)
  <workdir>/pictures/      PNGs of selected patches (training, visualize.py)
  <workdir>/checkpoints/   Orbax checkpoints (checkpoints.py)
"""

import json
import os

import ml_collections

from ptopk_patch_selection import errors
from ptopk_patch_selection import locations

CONFIG_FILE = "config.json"
PICTURES_FOLDER = "pictures"


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the config as <workdir>/config.json."""
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    f.write(config.to_json_best_effort(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved in its workdir.

  Fields added to configs/default.py since the run was saved take their
  defaults (when the checkout's configs/ is at hand), so tools that read an
  older workdir (visualize, benchmarks) see every field.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise errors.MissingFileError(f"{path} does not exist: is {workdir} the "
                                  "workdir of a training run?")
  with open(path) as f:
    saved = json.load(f)
  default_file = locations.checkout() / "configs" / "default.py"
  if default_file.is_file():
    default = locations.sibling_config(str(default_file), "default")
    _add_missing(saved, default.get_config().to_dict())
  return ml_collections.ConfigDict(saved)


def _add_missing(saved: dict, defaults: dict) -> None:
  """Adds to `saved`, recursively, the fields only `defaults` has."""
  for key, value in defaults.items():
    if key not in saved:
      saved[key] = value
    elif isinstance(value, dict) and isinstance(saved[key], dict):
      _add_missing(saved[key], value)
