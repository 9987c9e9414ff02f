# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Runs a command-line tool; an error the user can fix ends it in a few lines.

  if __name__ == "__main__":
    cli.run(main)

Such an error (`errors.UserError`, a config field that does not exist, a
config file that does not load) prints its message to stderr and exits with
status 1; `--verbosity=1` prints the traceback as well (before `--config` for
errors in the config flags: their parsing stops at the first failing one).
"""

import os
import sys
import traceback
from typing import Any, Callable, NoReturn

from absl import app
from absl import flags
from ml_collections import config_flags
# Public, but not re-exported by the package.
from ml_collections.config_flags.config_flags import is_config_flag

from ptopk_patch_selection import errors


def run(main: Callable[[list[str]], Any]) -> None:
  """`absl.app.run(main)`, ending in a short message on user errors."""

  def main_or_exit(argv):
    try:
      return main(argv)
    except errors.UserError as e:
      _exit(str(e), e)

  app.run(main_or_exit, flags_parser=_parse_flags)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; also loads every config file now, not on first use."""
  try:
    argv = app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:  # a locked ConfigDict has no field
    _exit(f"unknown config field {_innermost_message(e)}", e)
  for name in flags.FLAGS:
    flag = flags.FLAGS[name]
    if is_config_flag(flag):
      try:
        hasattr(flag.value, "lock")  # raises what made loading the file fail
      except OSError as e:
        path = os.path.abspath(config_flags.get_config_filename(flag))
        _exit(f"config file {path} (--{name}) does not load: "
              f"{str(e).splitlines()[-1].strip()}", e)
  return argv


def _innermost_message(error: BaseException) -> str:
  """The text of a wrapped error, with its newlines.

  ml_collections raises AttributeError(KeyError(text)), whose str() is the
  repr of text.
  """
  while len(error.args) == 1 and isinstance(error.args[0], BaseException):
    error = error.args[0]
  if len(error.args) == 1 and isinstance(error.args[0], str):
    return error.args[0]
  return str(error)


def _exit(message: str, error: BaseException) -> NoReturn:
  if flags.FLAGS["verbosity"].value >= 1:
    traceback.print_exception(error)
  else:  # a failing --config flag stops the parsing of those after it
    message += ("\n(--verbosity=1 shows the traceback)" if
                flags.FLAGS.is_parsed() else
                "\n(--verbosity=1 before --config shows the traceback)")
  print(f"Error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)
