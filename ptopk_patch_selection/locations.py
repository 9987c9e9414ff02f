# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Where configs and data are, whatever the current directory.

Relative paths in config fields (`dataset.data_dir = "data/tfds"`,
`dataset.manual_dir`, also when set by `--config.*` or the build CLI's
`--data_dir`) and the notebook's PTOPK_WORKDIR are relative to the root:
$PTOPK_ROOT if set, else the checkout. The checkout is the folder holding
`configs/default.py` beside the imported `ptopk_patch_selection/` (as with
`./run.sh` or `pip install -e .`), or the current directory for an installed
wheel. Other paths on a command line (`--workdir`, `--config`,
`--output_dir`) are relative to the current directory, as usual.

Config files load their base config by path rather than `from configs import
...`, so that `--config=/path/to/configs/traffic.py` works from any directory:

  default = locations.sibling_config(__file__, "default")
"""

import importlib.util
import os
import pathlib
import types

ROOT_ENV = "PTOPK_ROOT"


def checkout() -> pathlib.Path:
  """The repository this package is imported from, else the current folder."""
  folder = pathlib.Path(__file__).resolve().parents[1]
  if (folder / "configs" / "default.py").is_file():
    return folder
  return pathlib.Path.cwd()


def root() -> pathlib.Path:
  """The folder that relative config paths are relative to (see above)."""
  if os.environ.get(ROOT_ENV):
    return pathlib.Path(os.environ[ROOT_ENV]).expanduser().absolute()
  return checkout()


def resolve(path: str) -> str:
  """`path` made absolute against `root()`; URLs (gs://...) stay as they are."""
  if "://" in path:
    return path
  return str(root() / pathlib.Path(path).expanduser())


def sibling_config(config_file: str, name: str) -> types.ModuleType:
  """Loads the config module `<name>.py` from the folder of `config_file`."""
  path = pathlib.Path(config_file).resolve().with_name(f"{name}.py")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
