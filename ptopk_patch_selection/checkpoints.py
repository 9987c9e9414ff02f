# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""A run's Orbax checkpoints in <workdir>/checkpoints; damaged ones are skipped.

Orbax writes step N to `N.orbax-checkpoint-tmp` and renames it to `N` when it
is complete, so a run killed during a save leaves the earlier checkpoints as
they were; the leftover folder is never read and is replaced when step N is
saved again.

`restore_latest` restores the newest checkpoint that can be read. A newer one
that cannot (truncated files, a cut `_METADATA`, a half-copied step folder) is
reported with its path and moved to <workdir>/unreadable_checkpoints/, so that
the run saves that step again. When there are checkpoints but none can be
read, the run stops and names the folder: it never starts again from step 0
over existing checkpoints unless the user moves them away.
"""

import functools
import logging as pylogging
import os
import sys
import time
from typing import TypeVar

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from ptopk_patch_selection import errors
from ptopk_patch_selection import workdir_files

FOLDER = "checkpoints"
UNREADABLE_FOLDER = "unreadable_checkpoints"
_ITEM = "default"  # the folder of the one (StandardSave) item of a step
_REASON_CHARS = 240

State = TypeVar("State")


def manager(workdir: str) -> ocp.CheckpointManager:
  """The Orbax manager of workdir/checkpoints (keeps the last two)."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), FOLDER),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def restore_latest(checkpoint_manager: ocp.CheckpointManager, state: State, *,
                   set_aside_unreadable: bool = True) -> State:
  """The newest readable checkpoint, restored into `state`'s shardings.

  Args:
    checkpoint_manager: from `manager(workdir)`.
    state: the initial state: returned as it is when there is no checkpoint.
    set_aside_unreadable: move newer checkpoints that cannot be read to
      <workdir>/unreadable_checkpoints/ (for training: it saves those steps
      again). False for a reader of a run that may still be training.

  Returns:
    The restored state.

  Raises:
    errors.BadFileError: there are checkpoints but none can be read.
  """
  directory = checkpoint_manager.directory
  _drop_closed_event_loop_errors()
  _drop_unretrieved_read_errors()
  # Not checkpoint_manager.restore: a failed restore can leave the manager
  # unable to save (it infers its item layout from the first step it reads).
  checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
  unreadable = []  # (path, reason), newest first
  for step in sorted(checkpoint_manager.all_steps(), reverse=True):
    path = directory / str(step)
    try:
      restored = checkpointer.restore(path / _ITEM,
                                      args=ocp.args.StandardRestore(state))
    except Exception as e:  # pylint: disable=broad-except
      # Orbax, TensorStore and json raise many types on damaged files.
      unreadable.append((path, _reason(path, e)))
      _REPORTED_UNREADABLE.add(os.path.join(str(path), ""))
      continue
    for path, reason in unreadable:
      logging.warning("Checkpoint %s cannot be read (%s): using step %d "
                      "instead.", path, reason, step)
    if unreadable and set_aside_unreadable:
      _set_aside(checkpoint_manager, [path for path, _ in unreadable])
    if jax.process_index() == 0:
      print(f"Restoring {directory} at step {step}.", flush=True)
    return restored
  if unreadable:
    workdir = directory.parent
    raise errors.BadFileError(
        f"No checkpoint in {directory} can be read:\n" + "".join(
            f"  {path}: {reason}\n" for path, reason in unreadable) +
        f"If the config changed since they were saved, run with the one "
        f"they were saved with ({workdir / workdir_files.CONFIG_FILE}). To "
        f"train from step 0 instead, move {directory} away.")
  return state


def _reason(path: epath.Path, error: Exception) -> str:
  """Why the checkpoint at `path` could not be read, in one line."""
  if not (path / _ITEM).exists():
    return f"its {_ITEM}/ folder is missing, as in a half-copied step"
  first_line = str(error).split("\n", 1)[0]
  text = f"{type(error).__name__}: {first_line}"
  # TensorStore appends the JSON spec of the array it failed to read, after
  # a chain of contexts that ends with the file and the cause.
  text = text.split(" [tensorstore_spec", 1)[0]
  return text if len(text) <= _REASON_CHARS else "..." + text[-_REASON_CHARS:]


def _set_aside(checkpoint_manager: ocp.CheckpointManager,
               paths: list[epath.Path]) -> None:
  """Moves step folders out of the checkpoint folder (process 0)."""
  if jax.process_index() == 0:
    aside = checkpoint_manager.directory.parent / UNREADABLE_FOLDER
    aside.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in paths:
      target = aside / f"{path.name}-{stamp}"
      path.rename(target)
      logging.warning("Moved %s to %s; delete it when you no longer need it.",
                      path, target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("unreadable checkpoints set aside")
  checkpoint_manager.reload()


def _drop_closed_event_loop_errors() -> None:
  """Silences the TensorStore reads that are still running when one fails.

  Their callbacks find Orbax's event loop closed and each would print a
  `RuntimeError: Event loop is closed` traceback (an unraisable exception).
  """
  hook = sys.unraisablehook
  if not (isinstance(hook, functools.partial) and
          hook.func is _unless_closed_event_loop):
    sys.unraisablehook = functools.partial(_unless_closed_event_loop, hook)


_REPORTED_UNREADABLE = set()  # "<step folder>/" of each unreadable step


def _drop_unretrieved_read_errors() -> None:
  """Silences asyncio's report of the reads of an unreadable step.

  The other reads of a failed restore end with errors that nothing awaits;
  when their tasks are garbage collected, asyncio logs each one as "Task
  exception was never retrieved" with a TensorStore traceback, at a moment
  that depends on the collector. `restore_latest` has already reported the
  step in one line, so records about a reported step are dropped; any other
  asyncio error is still printed.
  """
  asyncio_logger = pylogging.getLogger("asyncio")
  if _about_reported_steps not in asyncio_logger.filters:
    asyncio_logger.addFilter(_about_reported_steps)


def _about_reported_steps(record: pylogging.LogRecord) -> bool:
  """False (drop) for an asyncio error that names a reported step."""
  error = record.exc_info[1] if record.exc_info else None
  text = f"{record.getMessage()} {error}"
  return not any(folder in text for folder in _REPORTED_UNREADABLE)


def _unless_closed_event_loop(hook, unraisable) -> None:
  error = unraisable.exc_value
  if not (isinstance(error, RuntimeError) and
          str(error) == "Event loop is closed"):
    hook(unraisable)
