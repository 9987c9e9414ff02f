# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Errors a user can fix: a bad config, a missing or damaged file.

Their message says what is wrong, which file (full path) or config field, and
what to do. The command-line tools print just that message (`cli.run`). Each
also derives from the built-in type callers would expect (ValueError,
FileNotFoundError), so library code can catch them as before.
"""


class UserError(Exception):
  """A problem the user can fix; the message says how."""


class ConfigError(UserError, ValueError):
  """A config field has a value that cannot work; the message names it."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or folder that is needed does not exist."""


class BadFileError(UserError, ValueError):
  """A file exists but is not what it should be: damaged, foreign, unsafe."""
