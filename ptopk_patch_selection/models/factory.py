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
from typing import Any, TYPE_CHECKING

import flax.linen as nn

from ptopk_patch_selection import errors
from ptopk_patch_selection import locations
from ptopk_patch_selection import patches as patches_lib
from ptopk_patch_selection import perturbed_topk as ptopk
from ptopk_patch_selection import sinkhorn_topk
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


def _topk(config: ml_collections.ConfigDict, k: int,
          num_patches: int) -> selection.TopK:
  """Top-K options, validated against d = num_patches candidates."""
  _check(1 <= k <= num_patches,
         f"model.k={k} must be between 1 and the number of candidate "
         f"patches ({num_patches}).")
  methods = (_choice(config, "selection", selection.SELECTIONS),
             _choice(config, "selection_eval", selection.SELECTIONS))
  if "sinkhorn" in methods:
    _check(k < num_patches, f"model.k={k} must be below the number of "
           f"candidate patches ({num_patches}) for Sinkhorn selection.")
    _check(config.sinkhorn.epsilon > 0,
           f"model.sinkhorn.epsilon={config.sinkhorn.epsilon} must be > 0.")
  _choice(config, "sinkhorn.form", sinkhorn_topk.FORMS)
  perturbed = config.perturbed
  try:  # the operator's own check, with the config's field names
    ptopk.check_options(
        num_samples=perturbed.num_samples, gradient=perturbed.gradient,
        noise=perturbed.noise,
        variance_reduction=perturbed.variance_reduction,
        chunk_size=perturbed.chunk_size, field_prefix="model.perturbed.")
  except ValueError as e:
    raise errors.ConfigError(str(e)) from None
  _choice(config, "normalization", selection.NORMALIZATIONS)
  return selection.TopK(
      k=k, num_samples=perturbed.num_samples, gradient=perturbed.gradient,
      noise=perturbed.noise, variance_reduction=perturbed.variance_reduction,
      chunk_size=perturbed.chunk_size,
      sinkhorn_epsilon=config.sinkhorn.epsilon,
      sinkhorn_iterations=config.sinkhorn.num_iterations,
      sinkhorn_form=config.sinkhorn.form)


def _selection_fields(config: ml_collections.ConfigDict,
                      num_patches: int) -> dict[str, Any]:
  """The selection fields PatchNet and NTS-Net share, validated."""
  return dict(topk=_topk(config, config.k, num_patches),
              selection=config.selection,
              selection_eval=config.selection_eval,
              normalization=config.normalization,
              normalization_epsilon=config.normalization_epsilon)


def _patchnet(config, num_classes, image_size) -> patchnet_lib.PatchNet:
  """PatchNet from config.model, validated."""
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
  selection_fields = _selection_fields(config, grid[0] * grid[1])
  _check(config.selection != "random" or config.selection_eval == "random",
         f"model.selection='random' trains no scorer, so "
         f"model.selection_eval={config.selection_eval!r} would evaluate an "
         "untrained one: set model.selection_eval='random' (random patches "
         "at evaluation too).")
  for field in ("hard_topk_probability", "random_patch_probability"):
    _check(0.0 <= config[field] <= 1.0,
           f"model.{field}={config[field]} must be in [0, 1].")
  train_patches = _choice(config, "train_patches", patchnet_lib.TRAIN_PATCHES)
  _check(train_patches == "soft" or config.selection == "perturbed",
         f"model.train_patches={train_patches!r} acts on a perturbed "
         f"selection; with model.selection={config.selection!r} it would be "
         "ignored: use model.train_patches='soft' or "
         "model.selection='perturbed'.")
  if train_patches == "score_function":
    _check(config.perturbed.loss_samples >= 2,
           f"model.perturbed.loss_samples={config.perturbed.loss_samples} "
           "must be >= 2 with train_patches='score_function' (leave-one-out "
           "baseline).")
    _check(config.hard_topk_probability == config.random_patch_probability
           == 0, "model.hard_topk_probability and "
           "model.random_patch_probability must be 0 with "
           "train_patches='score_function'.")
  _check_patch_dropout(config)
  aggregator_name = _choice(config, "aggregator", aggregators.AGGREGATORS)
  transformer = config.transformer
  if aggregator_name == "transformer":
    _choice(config, "transformer.pooling", aggregators.POOLINGS)
    _check(transformer.hidden_size % transformer.num_heads == 0,
           f"model.transformer.num_heads={transformer.num_heads} must divide"
           f" model.transformer.hidden_size={transformer.hidden_size}.")
  return patchnet_lib.PatchNet(
      num_classes=num_classes, k=config.k, patch_size=config.patch_size,
      downscale=config.downscale,
      scorer=scorer_lib.Scorer(
          use_se=config.scorer_has_se,
          padding=_choice(config, "scorer_padding",
                          scorer_lib.SCORER_PADDINGS)),
      feature_network=_feature_network(config),
      aggregator=aggregators.aggregator(
          aggregator_name, num_layers=transformer.num_layers,
          num_heads=transformer.num_heads,
          hidden_size=transformer.hidden_size, dropout=transformer.dropout,
          pooling=transformer.pooling),
      **selection_fields,
      patch_padding=_choice(config, "patch_padding",
                            patches_lib.PADDING_MODES),
      soft_extractor=_choice(config, "soft_extractor",
                             tuple(patchnet_lib.SOFT_EXTRACTORS)),
      patch_grid=_choice(config, "patch_grid", patchnet_lib.PATCH_GRIDS),
      append_position=config.append_position,
      hard_topk_probability=config.hard_topk_probability,
      random_patch_probability=config.random_patch_probability,
      train_patches=config.train_patches,
      loss_samples=config.perturbed.loss_samples,
      patch_dropout=config.patch_dropout)


def _check_patch_dropout(config: ml_collections.ConfigDict) -> None:
  """model.patch_dropout is in [0, 1) and acts on soft training patches."""
  rate = config.patch_dropout
  _check(0.0 <= rate < 1.0, f"model.patch_dropout={rate} must be in [0, 1).")
  if rate == 0:
    return
  _check(config.selection not in selection.HARD_SELECTIONS,
         f"model.patch_dropout={rate} would be ignored with model.selection="
         f"{config.selection!r}: hard training patches are cut by index. Set "
         "model.patch_dropout=0 or a soft selection.")
  _check(not (config.selection == "perturbed" and
              config.train_patches == "score_function"),
         f"model.patch_dropout={rate} would be ignored with "
         "model.train_patches='score_function': its training patches are cut "
         "by index. Set model.patch_dropout=0 or another train_patches.")


def _ntsnet(config, num_classes, image_size) -> ntsnet.NTSNet:
  """NTS-Net from config.model, validated."""
  _choice(config, "feature_network", feature_networks.STRIDE_32_NETWORKS)
  nts = config.ntsnet
  _check(nts.part_size >= 1,
         f"model.ntsnet.part_size={nts.part_size} must be >= 1.")
  return ntsnet.NTSNet(
      num_classes=num_classes, k=config.k,
      backbone=_feature_network(config),
      **_selection_fields(config, ntsnet.num_anchors(image_size)),
      communication=_choice(config, "ntsnet.communication",
                            ntsnet.COMMUNICATIONS),
      part_size=nts.part_size, dropout=nts.dropout,
      aggregation=_choice(config, "ntsnet.aggregation",
                          ntsnet.NTS_AGGREGATIONS),
      padding=_choice(config, "patch_padding", patches_lib.PADDING_MODES))


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
