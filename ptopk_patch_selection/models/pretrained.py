# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Pretrained feature-network weights (e.g. an ImageNet ResNet-50).

A checkpoint holds the variables of the bare feature network, as
`network.init(...)` returns them: {"params": ..., "batch_stats": ...}. Two
formats:
  * a `.npz` file whose keys are the flattened names joined by "/", e.g.
    "params/stage1_block1/conv1/kernel", "batch_stats/stem_bn/mean"
    (`save_npz` writes one);
  * an Orbax checkpoint directory of the same tree
    (`orbax.checkpoint.StandardCheckpointer().save(path, variables)`).
`load_pretrained` copies it into one submodule of a full model's variables
("feature_network" of PatchNet and WholeImageClassifier, "backbone" of
NTS-Net) and fails, naming them, on missing names and on shape mismatches.
Checkpoint entries the model does not have (a classifier head) are ignored
with a log line.

`prefix` (config.model.pretrained_prefix) loads part of a bigger checkpoint:
the module path, inside every collection, of the subtree that holds the
feature network, e.g. "feature_network" to take it from a whole PatchNet's
variables ("params/feature_network/...", "batch_stats/feature_network/...").
"" reads the checkpoint as the bare network. The released code's
`pretrained_prefix` went the other way: it named where in the model the
checkpoint lands, which `submodule` fixes here.
"""

import os
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

from absl import logging
from flax import traverse_util
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from ptopk_patch_selection import errors

_SEP = "/"
_FORMAT = ("a .npz file of plain arrays named like "
           "'params/stage1_block1/conv1/kernel', as pretrained.save_npz "
           "writes, or an Orbax checkpoint folder of the same tree")
_SHOWN = 5  # names shown per list when the checkpoint does not fit


def flatten(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Nested variables -> {"collection/module/.../name": array}."""
  return {name: np.asarray(value) for name, value in
          traverse_util.flatten_dict(variables, sep=_SEP).items()}


def save_npz(path: str, variables: Mapping[str, Any]) -> None:
  """Writes a feature network's variables as a flattened .npz file."""
  with open(path, "wb") as f:
    np.savez(f, **flatten(variables))


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
  """Flattened variables of a .npz file or an Orbax checkpoint directory.

  Nothing is unpickled: a .npz entry that holds Python objects is refused.

  Raises:
    errors.MissingFileError: nothing is at `path`.
    errors.BadFileError: `path` is not such a file (a pickle, a truncated
      download, another kind of file); the message names it.
  """
  path = os.path.abspath(path)
  if os.path.isdir(path):
    try:
      return flatten(ocp.StandardCheckpointer().restore(path))
    except Exception as e:  # pylint: disable=broad-except
      # Orbax and TensorStore raise many types on damaged folders.
      raise _not_weights(path, "not a readable Orbax checkpoint: " +
                         str(e).split("\n", 1)[0][:200]) from e
  if not os.path.exists(path):
    raise errors.MissingFileError(
        f"No pretrained checkpoint at {path} (model.pretrained_checkpoint): "
        f"it should be {_FORMAT}. A reader pretrained on texture patches "
        "(the embedded default's) is written there by `python -m "
        "ptopk_patch_selection.tools.pretrain_reader --config=CONFIG` "
        "(./run.sh runs it); model.pretrained_checkpoint=\"\" trains the "
        "feature network from scratch.")
  if not zipfile.is_zipfile(path):
    raise _not_weights(path, "not a zip archive of arrays: a pickle, a "
                       "truncated download or another kind of file")
  with np.load(path, allow_pickle=False) as data:
    arrays = {}
    for name in data.files:
      try:
        arrays[name] = data[name]  # bytes for an entry that is not .npy
      except ValueError as e:
        # numpy refuses object arrays, which are pickles, without unpickling.
        raise _not_weights(
            path, f"its entry {name!r} " +
            ("holds pickled Python objects, which are never loaded"
             if "allow_pickle" in str(e) else f"is not a plain array ({e})")
        ) from e
      except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _not_weights(path, f"its entry {name!r} is truncated or "
                           f"damaged ({e})") from e
      if not isinstance(arrays[name], np.ndarray):
        raise _not_weights(path, f"its entry {name!r} is not a .npy array")
    return arrays


def _not_weights(path: str, reason: str) -> errors.BadFileError:
  return errors.BadFileError(
      f"{path} is not a weights file ({reason}). model.pretrained_checkpoint "
      f"should name {_FORMAT}.")


def select_prefix(checkpoint: dict[str, np.ndarray], prefix: str,
                  path: str) -> dict[str, np.ndarray]:
  """The entries "collection/PREFIX/rest" of a flattened checkpoint, named
  "collection/rest"; all of it for prefix "".

  Raises:
    errors.ConfigError: no entry is under `prefix`; the message names the
      checkpoint's full path and its top-level module names.
  """
  prefix = prefix.strip(_SEP)
  if not prefix:
    return checkpoint
  selected = {}
  for name, value in checkpoint.items():
    collection, _, rest = name.partition(_SEP)
    if rest.startswith(prefix + _SEP):
      selected[f"{collection}{_SEP}{rest[len(prefix) + 1:]}"] = value
  if not selected:
    tops = sorted({name.split(_SEP)[1] for name in checkpoint
                   if name.count(_SEP) >= 1})
    raise errors.ConfigError(
        f"model.pretrained_prefix={prefix!r} is not in the pretrained "
        f"checkpoint {os.path.abspath(path)}: no entry is named "
        f"'<collection>/{prefix}/...'. Its top-level names (after the "
        f"collection) are: {', '.join(tops) or 'none'}. Set "
        "model.pretrained_prefix to one of them (or a path below one), or "
        "to \"\" for a checkpoint of the bare feature network.")
  return selected


def load_pretrained(variables: Mapping[str, Any], path: str, *,
                    submodule: str, prefix: str = "") -> dict[str, Any]:
  """Returns `variables` with `submodule`'s variables read from `path`.

  Args:
    variables: a model's variables ({"params": ..., "batch_stats": ...}).
    path: a .npz file or an Orbax checkpoint directory (module docstring).
    submodule: name of the feature network inside the model.
    prefix: module path of the checkpoint's subtree to load ("" = all of
      it; module docstring).

  Returns:
    New variables; everything outside the submodule is unchanged.

  Raises:
    errors.BadFileError: (a ValueError) when a variable of the submodule is
      missing from the checkpoint or has another shape; the message shows a
      few of the model's and the file's names.
    errors.ConfigError: nothing in the checkpoint is under `prefix`.
  """
  checkpoint = select_prefix(read_checkpoint(path), prefix, path)
  target = {}
  for collection, tree in variables.items():
    if submodule in tree:
      for name, value in traverse_util.flatten_dict(tree[submodule],
                                                     sep=_SEP).items():
        target[f"{collection}{_SEP}{name}"] = value
  if not target:
    raise ValueError(f"The model has no submodule {submodule!r}.")
  checkpoint = {name: _fit_grey(value, target[name].shape)
                if name in target else value
                for name, value in checkpoint.items()}
  missing = sorted(set(target) - set(checkpoint))
  mismatched = sorted(
      f"{name}: checkpoint {checkpoint[name].shape} vs model "
      f"{target[name].shape}" for name in set(target) & set(checkpoint)
      if checkpoint[name].shape != target[name].shape)
  unused = sorted(set(checkpoint) - set(target))
  if missing or mismatched:
    raise errors.BadFileError(
        f"Pretrained checkpoint {os.path.abspath(path)}" +
        (f" under prefix {prefix!r}" if prefix else "") +
        f" does not fit the model's {submodule!r}:\n" +
        _names("the model's names missing from the file", missing) +
        _names("the file's names the model lacks", unused) +
        _names("shape mismatches", mismatched) +
        "Its names should be those of the bare feature network, as "
        "pretrained.save_npz(path, network.init(...)) writes them.")
  if unused:
    logging.info("Ignoring %d checkpoint entries: %s", len(unused), unused)
  logging.info("Loaded %d pretrained arrays from %s into %s.", len(target),
               path, submodule)
  flat = traverse_util.flatten_dict(variables, sep=_SEP)
  for name in target:
    collection, rest = name.split(_SEP, 1)
    key = f"{collection}{_SEP}{submodule}{_SEP}{rest}"
    flat[key] = jnp.asarray(checkpoint[name], dtype=flat[key].dtype)
  return traverse_util.unflatten_dict(flat, sep=_SEP)


def _fit_grey(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """A colour first-layer kernel (kh, kw, 3, f) for a model of one input
  channel (kh, kw, 1, f): summed over the colours, it gives on a grey image
  what the colour kernel gives on that image repeated in 3 channels. Any
  other value is returned as it is."""
  if (value.ndim == 4 and value.shape[2] == 3 and
      tuple(shape) == value.shape[:2] + (1,) + value.shape[3:]):
    return value.sum(axis=2, keepdims=True)
  return value


def _names(title: str, names: list[str]) -> str:
  """A line with the first few of `names`, or nothing if there are none."""
  if not names:
    return ""
  more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
  return f"  {title} ({len(names)}): {', '.join(names[:_SHOWN])}{more}\n"
