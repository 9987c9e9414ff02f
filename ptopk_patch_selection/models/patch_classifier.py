# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""A feature network and a classifier head on one patch: (n, p, p, 3) -> logits.

The reader of PatchNet alone, to pretrain it (tools/pretrain_reader.py). Its "feature_network"
submodule has PatchNet's names, so its variables load into PatchNet through
model.pretrained_checkpoint (`feature_network_variables`).
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import optax

from ptopk_patch_selection.models import feature_networks
from ptopk_patch_selection.models import patchnet

FEATURE_NETWORK = "feature_network"  # the attribute, as in PatchNet


class PatchClassifier(nn.Module):
  """feature_network (patches -> (n, D)) -> ClassifierHead -> (n, C)."""
  feature_network: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, patches: jax.Array, *, train: bool) -> jax.Array:
    features = self.feature_network(patches, train=train)
    return patchnet.ClassifierHead(self.num_classes, name="head")(features)

  @staticmethod
  def loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of logits (n, C) and labels (n,)."""
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, labels).mean()


def create(feature_network: str, num_classes: int) -> PatchClassifier:
  """A PatchClassifier on the feature network named `feature_network`."""
  return PatchClassifier(feature_networks.feature_network(feature_network),
                         num_classes)


def feature_network_variables(variables: Mapping[str, Any]) -> dict:
  """The bare feature network's variables, as PatchNet's checkpoint loader
  reads them ({"params": ..., "batch_stats": ...}; the head dropped)."""
  return {collection: tree[FEATURE_NETWORK]
          for collection, tree in variables.items() if FEATURE_NETWORK in tree}
