# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""`config.model` -> a validated model: `create_model`, pretrained weights.

The paper's experiments and the `config.model` fields that select them:
  * Traffic signs (section 5.1; 960x1280): name="patchnet",
    feature_network="ats_traffic" ("resnet18_thin" is the appendix's
    description), aggregator="mean", k=5, patch_size=100, downscale=3,
    selection="perturbed", selection_eval="hard". Baselines: name=
    "whole_image" with the same feature network (the full-image CNN, or a
    downscaled one with whole_image_downscale), selection="random" (random
    patches), selection="sinkhorn", perturbed.gradient="diagonal" (the
    released gradient).
  * Billiard (section 5.2; 1000x1000): name="patchnet",
    feature_network="resnet18", k=10, patch_size=100, downscale=4,
    aggregator="transformer" (transformer.num_layers=3, num_heads=8,
    hidden_size=256, pooling="sum") or "mean" / "max"; the "concat.
    position" variants set append_position=True; baseline name="whole_image"
    with feature_network="resnet18".
  * CUB-200 (section 5.3; 448x448): name="ntsnet", feature_network=
    "resnet50", k=4 (or 2), ntsnet.communication="squeeze_excite_d",
    ntsnet.aggregation="mean" or "concat", pretrained_checkpoint= an
    ImageNet ResNet-50 (`pretrained.load_pretrained` formats); its losses are
    `NTSNet.loss`.
  * Speed and memory (appendix B): benchmarks/model_speed.py compares
    PatchNet with the same feature network on the whole image.
"""

from __future__ import annotations

from collections.abc import Sequence
import re
from typing import Any, TYPE_CHECKING

import flax.linen as nn

from ptopk_patch_selection import errors
from ptopk_patch_selection import locations
from ptopk_patch_selection.models import aggregators
from ptopk_patch_selection.models import feature_networks
from ptopk_patch_selection.models import ntsnet
from ptopk_patch_selection.models import patchnet as patchnet_lib
from ptopk_patch_selection.models import pretrained
from ptopk_patch_selection.models import scorer as scorer_lib
from ptopk_patch_selection.models import selection

if TYPE_CHECKING:  # the models run on the core dependencies alone
  import ml_collections

MODEL_NAMES = ("patchnet", "ntsnet", "whole_image")
_PRETRAINED_SUBMODULE = {"patchnet": "feature_network",
                         "whole_image": "feature_network",
                         "ntsnet": "backbone"}


def _choice(config: ml_collections.ConfigDict, field: str,
            choices: Sequence[str]) -> str:
  """config.<field> (dotted), checked to be one of choices."""
  value = config
  for part in field.split("."):
    value = value[part]
  if value not in choices:
    raise errors.ConfigError(f"model.{field}={value!r} is not one of "
                             f"{tuple(choices)}.")
  return value


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise errors.ConfigError(message)


def _feature_network(config: ml_collections.ConfigDict) -> nn.Module:
  """config.feature_network, with config.resnet_stem and stem_gradient for
  the ResNets."""
  stem = _choice(config, "resnet_stem", feature_networks.RESNET_STEMS)
  gradient = _choice(config, "stem_gradient", feature_networks.STEM_GRADIENTS)
  try:
    return feature_networks.feature_network(config.feature_network, stem,
                                            gradient)
  except ValueError as e:
    raise errors.ConfigError(f"model.stem_gradient={gradient!r} with "
                             f"model.feature_network="
                             f"{config.feature_network!r} and "
                             f"model.resnet_stem={stem!r}: {e}") from e


# Module fields whose config path is not model.<field>. PatchNet's and
# NTS-Net's checks may name their Top-K's fields too.
_TOPK_PATHS = {"num_samples": "perturbed.num_samples",
               "gradient": "perturbed.gradient", "noise": "perturbed.noise",
               "variance_reduction": "perturbed.variance_reduction",
               "chunk_size": "perturbed.chunk_size",
               "shared_noise": "perturbed.shared_noise",
               "sinkhorn_epsilon": "sinkhorn.epsilon",
               "sinkhorn_iterations": "sinkhorn.num_iterations",
               "sinkhorn_form": "sinkhorn.form"}
_PATCHNET_PATHS = {**_TOPK_PATHS, "loss_samples": "perturbed.loss_samples"}
_NTSNET_PATHS = {**_TOPK_PATHS, "communication": "ntsnet.communication",
                 "part_size": "ntsnet.part_size", "dropout": "ntsnet.dropout",
                 "aggregation": "ntsnet.aggregation",
                 "padding": "patch_padding"}
_SCORER_PATHS = {"use_se": "scorer_has_se", "padding": "scorer_padding"}
_TRANSFORMER_PATHS = {name: "transformer." + name for name in (
    "num_layers", "num_heads", "hidden_size", "dropout", "pooling")}


def _build(constructor, paths: dict[str, str], **fields):
  """constructor(**fields), whose own checks raise ValueError naming its
  fields, with those names turned into config paths for a ConfigError
  ("name=" -> "model.<path>="; `paths` where it is not model.<name>)."""
  try:
    return constructor(**fields)
  except ValueError as e:
    names = "|".join(sorted(set(fields) | set(paths), key=len, reverse=True))
    message = re.sub(rf"(?<![\w.])({names})=",
                     lambda m: f"model.{paths.get(m[1], m[1])}=", str(e))
    raise errors.ConfigError(message) from None


def _selection_fields(config: ml_collections.ConfigDict,
                      num_patches: int) -> dict[str, Any]:
  """The selection fields PatchNet and NTS-Net share, with the Top-K for
  d = num_patches candidates."""
  k = config.k
  _check(1 <= k <= num_patches,
         f"model.k={k} must be between 1 and the number of candidate "
         f"patches ({num_patches}).")
  _check(k < num_patches or "sinkhorn" not in (config.selection,
                                               config.selection_eval),
         f"model.k={k} must be below the number of candidate patches "
         f"({num_patches}) for Sinkhorn selection.")
  perturbed = config.perturbed
  topk = _build(
      selection.TopK, _TOPK_PATHS, k=k, num_samples=perturbed.num_samples,
      gradient=perturbed.gradient, noise=perturbed.noise,
      variance_reduction=perturbed.variance_reduction,
      chunk_size=perturbed.chunk_size, shared_noise=perturbed.shared_noise,
      sinkhorn_epsilon=config.sinkhorn.epsilon,
      sinkhorn_iterations=config.sinkhorn.num_iterations,
      sinkhorn_form=config.sinkhorn.form)
  return dict(topk=topk, selection=config.selection,
              selection_eval=config.selection_eval,
              normalization=config.normalization,
              normalization_epsilon=config.normalization_epsilon)


def _patchnet(config, num_classes, image_size) -> patchnet_lib.PatchNet:
  """PatchNet from config.model; the geometry is checked against the image
  here, every other field by the modules themselves."""
  h, w = image_size
  _check(isinstance(config.downscale, int) and config.downscale >= 1,
         f"model.downscale={config.downscale!r} must be an integer >= 1.")
  grid = scorer_lib.Scorer.grid_size(image_size, config.downscale)
  _check(min(grid) >= 1,
         f"model.downscale={config.downscale} leaves no scorer grid for a "
         f"{h}x{w} image (each side needs >= 16 px after downscaling).")
  _check(1 <= config.patch_size <= min(h, w),
         f"model.patch_size={config.patch_size} must be between 1 and the "
         f"image's smaller side ({h}x{w}).")
  transformer = config.transformer
  if config.aggregator == "transformer":
    aggregator = _build(
        aggregators.TransformerAggregator, _TRANSFORMER_PATHS,
        num_layers=transformer.num_layers, num_heads=transformer.num_heads,
        hidden_size=transformer.hidden_size, dropout=transformer.dropout,
        pooling=transformer.pooling)
  else:
    aggregator = aggregators.aggregator(
        _choice(config, "aggregator", aggregators.AGGREGATORS))
  return _build(
      patchnet_lib.PatchNet, _PATCHNET_PATHS,
      num_classes=num_classes, k=config.k, patch_size=config.patch_size,
      downscale=config.downscale,
      scorer=_build(scorer_lib.Scorer, _SCORER_PATHS,
                    use_se=config.scorer_has_se,
                    padding=config.scorer_padding),
      feature_network=_feature_network(config),
      aggregator=aggregator,
      **_selection_fields(config, grid[0] * grid[1]),
      patch_padding=config.patch_padding,
      soft_extractor=config.soft_extractor,
      patch_grid=config.patch_grid,
      append_position=config.append_position,
      hard_topk_probability=config.hard_topk_probability,
      random_patch_probability=config.random_patch_probability,
      train_patches=config.train_patches,
      loss_samples=config.perturbed.loss_samples,
      patch_dropout=config.patch_dropout)


def _ntsnet(config, num_classes, image_size) -> ntsnet.NTSNet:
  """NTS-Net from config.model; its modules check their own fields."""
  _choice(config, "feature_network", feature_networks.STRIDE_32_NETWORKS)
  nts = config.ntsnet
  return _build(
      ntsnet.NTSNet, _NTSNET_PATHS,
      num_classes=num_classes, k=config.k,
      backbone=_feature_network(config),
      **_selection_fields(config, ntsnet.num_anchors(image_size)),
      communication=nts.communication, part_size=nts.part_size,
      dropout=nts.dropout, aggregation=nts.aggregation,
      padding=config.patch_padding)


def create_model(model_config: ml_collections.ConfigDict, *, num_classes: int,
                 image_size: Sequence[int]) -> nn.Module:
  """Builds and validates the model described by `config.model`.

  Args:
    model_config: the `config.model` section (configs/default.py).
    num_classes: number of classes.
    image_size: (h, w) of the images the model will see.

  Returns:
    A PatchNet, NTSNet or WholeImageClassifier.

  Raises:
    ValueError: an invalid field; the message names it ("model.k=...").
  """
  name = _choice(model_config, "name", MODEL_NAMES)
  _choice(model_config, "feature_network", feature_networks.FEATURE_NETWORKS)
  _check(name == "patchnet" or model_config.patch_dropout == 0,
         f"model.patch_dropout={model_config.patch_dropout} would be ignored "
         f"with model.name={name!r}: only PatchNet's soft patches use it.")
  if name == "patchnet":
    return _patchnet(model_config, num_classes, tuple(image_size))
  if name == "ntsnet":
    return _ntsnet(model_config, num_classes, tuple(image_size))
  downscale = model_config.whole_image_downscale
  _check(isinstance(downscale, int) and downscale >= 1,
         f"model.whole_image_downscale={downscale!r} must be an integer >= 1.")
  return patchnet_lib.WholeImageClassifier(
      num_classes=num_classes,
      feature_network=_feature_network(model_config),
      downscale=downscale, append_position=model_config.append_position,
      head=_choice(model_config, "whole_image_head",
                   patchnet_lib.WHOLE_IMAGE_HEADS))


def load_pretrained_feature_network(variables: Any,
                                    model_config: ml_collections.ConfigDict
                                    ) -> Any:
  """Loads config.model.pretrained_checkpoint into the feature network.

  Returns `variables` unchanged when the field is empty. A relative path is
  relative to the root, like the data fields (locations.py).
  """
  if not model_config.pretrained_checkpoint:
    return variables
  return pretrained.load_pretrained(
      variables, locations.resolve(model_config.pretrained_checkpoint),
      submodule=_PRETRAINED_SUBMODULE[model_config.name],
      prefix=model_config.pretrained_prefix)
