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
"""

import os
from collections.abc import Mapping
from typing import Any

from absl import logging
from flax import traverse_util
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

_SEP = "/"


def flatten(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Nested variables -> {"collection/module/.../name": array}."""
  return {name: np.asarray(value) for name, value in
          traverse_util.flatten_dict(variables, sep=_SEP).items()}


def save_npz(path: str, variables: Mapping[str, Any]) -> None:
  """Writes a feature network's variables as a flattened .npz file."""
  with open(path, "wb") as f:
    np.savez(f, **flatten(variables))


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
  """Flattened variables of a .npz file or an Orbax checkpoint directory."""
  if os.path.isdir(path):
    tree = ocp.StandardCheckpointer().restore(os.path.abspath(path))
    return flatten(tree)
  if not os.path.exists(path):
    raise FileNotFoundError(f"No pretrained checkpoint at {path!r}.")
  with np.load(path) as data:
    return {name: data[name] for name in data.files}


def load_pretrained(variables: Mapping[str, Any], path: str, *,
                    submodule: str) -> dict[str, Any]:
  """Returns `variables` with `submodule`'s variables read from `path`.

  Args:
    variables: a model's variables ({"params": ..., "batch_stats": ...}).
    path: a .npz file or an Orbax checkpoint directory (module docstring).
    submodule: name of the feature network inside the model.

  Returns:
    New variables; everything outside the submodule is unchanged.

  Raises:
    ValueError: when a variable of the submodule is missing from the
      checkpoint or has another shape; the message lists them all.
  """
  checkpoint = read_checkpoint(path)
  target = {}
  for collection, tree in variables.items():
    if submodule in tree:
      for name, value in traverse_util.flatten_dict(tree[submodule],
                                                     sep=_SEP).items():
        target[f"{collection}{_SEP}{name}"] = value
  if not target:
    raise ValueError(f"The model has no submodule {submodule!r}.")
  missing = sorted(set(target) - set(checkpoint))
  mismatched = sorted(
      f"{name}: checkpoint {checkpoint[name].shape} vs model "
      f"{target[name].shape}" for name in set(target) & set(checkpoint)
      if checkpoint[name].shape != target[name].shape)
  if missing or mismatched:
    raise ValueError(
        f"Pretrained checkpoint {path!r} does not fit {submodule!r}. "
        f"Missing ({len(missing)}): {missing}. "
        f"Shape mismatches ({len(mismatched)}): {mismatched}.")
  unused = sorted(set(checkpoint) - set(target))
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
