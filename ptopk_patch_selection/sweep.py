# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""Prints one training command per point of a config's released sweep.

  python -m ptopk_patch_selection.sweep --config=configs/cub.py \
      --workdir=workdirs/cub_sweep [-- --config.model.pretrained_checkpoint=P]

A config with a sweep has `get_sweep()`: a list of {field: value} overrides
("model.k": 2). Each point becomes
  python -m ptopk_patch_selection.main --config=FILE[:VARIANT] \
      --config.model.k=2 --config.seed=3 --workdir=WORKDIR/model.k=2,seed=3
with the arguments after `--` appended, one line each, for your own
scheduler: `... | xargs -P 2 -I{} sh -c {}` or one cluster job per line.
Nothing is run or scheduled here.
"""

import argparse
import importlib.util
import pathlib
import shlex
import sys
from typing import Any

from ptopk_patch_selection import errors


def load_sweep(config: str) -> list[dict[str, Any]]:
  """get_sweep() of the config file of `config` ("FILE[:VARIANT]")."""
  path = pathlib.Path(config.split(":", 1)[0]).resolve()
  if not path.is_file():
    raise errors.MissingFileError(f"No config file {path} (--config).")
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise errors.ConfigError(
        f"{path} has no get_sweep(): the released configs with a sweep are "
        "configs/cub.py and configs/traffic_cnn.py.")
  return list(module.get_sweep())


def commands(config: str, workdir: str, extra: list[str] = ()) -> list[str]:
  """The shell command of every point of `config`'s sweep."""
  lines = []
  for point in load_sweep(config):
    name = ",".join(f"{field}={value}" for field, value in point.items())
    argv = ["python", "-m", "ptopk_patch_selection.main",
            f"--config={config}"]
    argv += [f"--config.{field}={value!r}" for field, value in point.items()]
    argv += [f"--workdir={pathlib.PurePath(workdir) / name}", *extra]
    lines.append(" ".join(shlex.quote(arg) for arg in argv))
  return lines


def main(argv: list[str]) -> None:
  extra = []
  if "--" in argv:
    argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True,
                      help="config file with get_sweep(), [:VARIANT]")
  parser.add_argument("--workdir", required=True,
                      help="parent folder of the runs' workdirs")
  args = parser.parse_args(argv)
  try:
    print("\n".join(commands(args.config, args.workdir, extra)))
  except errors.UserError as e:
    sys.exit(f"Error: {e}")


if __name__ == "__main__":
  main(sys.argv[1:])
