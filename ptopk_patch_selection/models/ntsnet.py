# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""NTS-Net (Yang et al. 2018) with a differentiable Top-K instead of NMS.

For CUB-200 (paper section 5.3). One backbone, shared:
  1. backbone map of the whole image (b, h/32, w/32, C) (448 -> 14x14x2048);
  2. proposal network on the (detached) map: three levels at strides 32, 64
     and 128 with 6, 6 and 9 anchor shapes (3 aspect ratios x 2 or 3 scales),
     i.e. 14*14*6 + 7*7*6 + 4*4*9 = 1614 anchor scores at 448x448, min-max
     normalised over all anchors;
  3. Top-K over the anchors ("perturbed" in training, "hard" at evaluation)
     -> indicators (b, k, 1614);
  4. part images: slot r is sum_a w[r, a] resize(crop_a, part_size), a blend
     of anchor crops (exactly one crop for a hard selection);
  5. backbone features of the k parts and of the whole image (dropout 0.5)
     feed three heads: "raw" (whole image), "part" (each part) and "concat"
     (the k parts with the whole image; `ntsnet_losses` sums their cross
     entropies). There is no ranking loss: the Top-K gradient trains the
     proposal network.
"""

import dataclasses
import itertools
import math
from collections.abc import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from ptopk_patch_selection import patches as patches_lib
from ptopk_patch_selection import perturbed_topk as ptopk
from ptopk_patch_selection.models import aggregators
from ptopk_patch_selection.models import scorer as scorer_lib
from ptopk_patch_selection.models import selection as selection_lib

COMMUNICATIONS = ("none", "squeeze_excite_x", "squeeze_excite_d",
                  "transformer")
NTS_AGGREGATIONS = ("mean", "concat")
ASPECT_RATIOS = (0.667, 1.0, 1.5)
_PROPOSAL_WIDTH = 128
# communication="transformer" (released): 2 post-LN layers, 8 heads, the
# released Transformer's dropout.
_COMMUNICATION_LAYERS = 2
_COMMUNICATION_HEADS = 8
_COMMUNICATION_DROPOUT = 0.1


@dataclasses.dataclass(frozen=True)
class AnchorLevel:
  """Anchors of one proposal level: base size and scales at a stride."""
  stride: int
  size: int
  scales: tuple[float, ...]

  @property
  def shapes(self) -> tuple[tuple[int, int], ...]:
    """(height, width) of each anchor, scales outer and ratios inner."""
    return tuple((int(self.size * s / math.sqrt(r)),
                  int(self.size * s * math.sqrt(r)))
                 for s in self.scales for r in ASPECT_RATIOS)

  def grid(self, image_size: Sequence[int]) -> tuple[int, int]:
    return tuple(math.ceil(side / self.stride) for side in image_size)


ANCHOR_LEVELS = (
    AnchorLevel(32, 48, (2**(1 / 3), 2**(2 / 3))),
    AnchorLevel(64, 96, (2**(1 / 3), 2**(2 / 3))),
    AnchorLevel(128, 192, (1.0, 2**(1 / 3), 2**(2 / 3))),
)


def num_anchors(image_size: Sequence[int]) -> int:
  """Number of anchors of an (h, w) image (1614 at 448x448)."""
  return sum(math.prod(level.grid(image_size)) * len(level.shapes)
             for level in ANCHOR_LEVELS)


def _crop_window(images, start, size, mode):
  """Rows [start, start + size) of axis 1 of images, padded by `mode`."""
  end = images.shape[1]
  before, after = max(-start, 0), max(start + size - end, 0)
  images = jnp.pad(images, ((0, 0), (before, after), (0, 0), (0, 0)),
                   mode=mode)
  return jax.lax.slice_in_dim(images, max(start, 0), max(start, 0) + size,
                              axis=1)


def weighted_anchor_crops(images: jax.Array, weights: jax.Array,
                          stride: int, shape: tuple[int, int],
                          padding: str = "constant") -> jax.Array:
  """Blends of one anchor shape's crops: sum_ij w[b, r, i, j] crop_ij.

  Crop (i, j) is the (kh, kw) window whose top-left corner is
  (i * stride - pad_h, j * stride - pad_w), pad = ceil((kernel - stride) / 2),
  i.e. centred on the grid cell. The blend is one VALID convolution of the
  image with the weight map dilated by the stride (one group per example and
  channel), so no (grid, kh, kw, c) tensor of all crops is built.

  Args:
    images: (b, h, w, c).
    weights: (b, k, gh, gw) weights of the anchors of this shape.
    stride: the level's stride.
    shape: (kh, kw) of the crops.
    padding: jnp.pad mode outside the image.

  Returns:
    (b, k, kh, kw, c) blended crops.
  """
  b, _, _, c = images.shape
  _, k, gh, gw = weights.shape
  kh, kw = shape
  pad_h, pad_w = (math.ceil((kernel - stride) / 2) for kernel in shape)
  x = _crop_window(images, -pad_h, (gh - 1) * stride + kh, padding)
  x = jnp.swapaxes(x, 1, 2)
  x = jnp.swapaxes(_crop_window(x, -pad_w, (gw - 1) * stride + kw, padding),
                   1, 2)
  lhs = x.transpose(1, 2, 0, 3).reshape(1, x.shape[1], x.shape[2], b * c)
  # Kernel (gh, gw, 1, b * c * k): group (example, channel) -> k outputs.
  kernel = jnp.broadcast_to(weights.transpose(2, 3, 0, 1)[:, :, :, None, :],
                            (gh, gw, b, c, k)).reshape(gh, gw, 1, b * c * k)
  out = jax.lax.conv_general_dilated(
      lhs, kernel.astype(lhs.dtype), (1, 1), "VALID",
      rhs_dilation=(stride, stride), feature_group_count=b * c,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return out.reshape(kh, kw, b, c, k).transpose(2, 4, 0, 1, 3)


def part_images(images: jax.Array, indicators: jax.Array, part_size: int,
                padding: str = "constant") -> jax.Array:
  """Part images (b, k, P, P, c) from (b, k, num_anchors) indicators."""
  b, _, _, c = images.shape
  k = indicators.shape[1]
  parts = jnp.zeros((b * k, part_size, part_size, c), images.dtype)
  offset = 0
  for level in ANCHOR_LEVELS:
    gh, gw = level.grid(images.shape[1:3])
    for shape in level.shapes:
      weights = indicators[:, :, offset:offset + gh * gw].reshape(b, k, gh, gw)
      offset += gh * gw
      crops = weighted_anchor_crops(images, weights, level.stride, shape,
                                    padding)
      parts += jax.image.resize(crops.reshape((b * k,) + shape + (c,)),
                                (b * k, part_size, part_size, c), "bilinear")
  return parts.reshape(b, k, part_size, part_size, c)


@flax.struct.dataclass
class NTSNetOutput(selection_lib.SelectionOutput):
  """NTS-Net's auxiliary output: the anchors' selection, scores (b, A).

  Attributes:
    raw_logits: (b, classes) of the whole image.
    part_logits: (b, k, classes) of each part.
    parts: (b, k, P, P, c) part images (P = part_size).
  """
  raw_logits: jax.Array
  part_logits: jax.Array
  parts: jax.Array

  def pictures(self) -> dict[str, jax.Array]:
    """What an evaluation picture draws (`visualization.selection_picture`):
    the part images (b, k, P, P, c)."""
    return {"parts": self.parts}


class ProposalNetwork(nn.Module):
  """Anchor scores from a backbone map (b, gh, gw, C): (b, num_anchors).

  Three levels of ReLU(conv3x3, 128) at strides 1, 2, 2, optional global
  communication, then a 1x1 convolution per level to its anchor shapes.
  Scores are flattened map by map (anchor shape outer, (row, col) inner), the
  order `part_images` reads. "squeeze_excite_x" gates the backbone map's
  channels (reduction 16). The others see all levels' positions together as
  tokens (b, n, 128), n = 14*14 + 7*7 + 4*4 = 261 at 448x448:
  "squeeze_excite_d" gates the 128 channels from their mean (reduction 4);
  "transformer" adds a learned position parameter (1, n, 128) and runs 2
  post-LN self-attention layers (8 heads, dropout 0.1 in training only).
  """
  communication: str = "squeeze_excite_d"

  def _communicate(self, levels: list[jax.Array], train: bool
                   ) -> list[jax.Array]:
    """All levels' positions as one token sequence, mixed, split back."""
    b = levels[0].shape[0]
    tokens = jnp.concatenate(
        [level.reshape(b, -1, _PROPOSAL_WIDTH) for level in levels], axis=1)
    if self.communication == "squeeze_excite_d":
      tokens = scorer_lib.SqueezeExcite(4)(tokens)
    else:
      position = self.param("position",
                            nn.initializers.normal(1.0 / _PROPOSAL_WIDTH),
                            (1,) + tokens.shape[1:])
      tokens = aggregators.transformer_layers(
          tokens + position, num_layers=_COMMUNICATION_LAYERS,
          num_heads=_COMMUNICATION_HEADS, dropout=_COMMUNICATION_DROPOUT,
          train=train)
    sizes = [math.prod(level.shape[1:3]) for level in levels]
    splits = jnp.split(tokens, list(itertools.accumulate(sizes[:-1])), axis=1)
    return [t.reshape(level.shape) for t, level in zip(splits, levels)]

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.communication not in COMMUNICATIONS:
      raise ValueError(f"communication={self.communication!r} is not one of "
                       f"{COMMUNICATIONS}.")
    if self.communication == "squeeze_excite_x":
      x = scorer_lib.SqueezeExcite(16)(x)
    levels = []
    for stride in (1, 2, 2):
      x = nn.relu(nn.Conv(_PROPOSAL_WIDTH, (3, 3), stride)(x))
      levels.append(x)
    if self.communication in ("squeeze_excite_d", "transformer"):
      levels = self._communicate(levels, train)
    scores = []
    for level, anchors in zip(levels, ANCHOR_LEVELS):
      level_scores = nn.Conv(len(anchors.shapes), (1, 1))(level)
      scores.append(level_scores.transpose(0, 3, 1, 2).reshape(
          level.shape[0], -1))
    return jnp.concatenate(scores, axis=1)


class NTSNet(nn.Module):
  """NTS-Net with differentiable Top-K: image -> (concat logits, aux).

  Attributes:
    num_classes: number of classes (200 for CUB).
    k: number of parts.
    backbone: feature network with stride 32 called as
      `backbone(x, train=..., pool=False)` (ResNet-50 in the paper).
    topk: Top-K options (`selection.TopK`).
    selection, selection_eval: Top-K method in training / at evaluation.
    normalization, normalization_epsilon: anchor score normalisation.
    communication: one of COMMUNICATIONS.
    part_size: side of the part images.
    dropout: dropout rate on the pooled features.
    aggregation: "mean" (mean of the part features plus the whole-image
      features, the paper's 'mean') or "concat" (their concatenation).
    padding: jnp.pad mode for anchor crops beyond the image.
  """
  num_classes: int
  k: int
  backbone: nn.Module
  topk: selection_lib.TopK
  selection: str = "perturbed"
  selection_eval: str = "hard"
  normalization: str = "minmax"
  normalization_epsilon: float = 1e-5
  communication: str = "squeeze_excite_d"
  part_size: int = 224
  dropout: float = 0.5
  aggregation: str = "mean"
  padding: str = "constant"

  def __post_init__(self):
    selection_lib.check_selection_fields(self.selection, self.selection_eval,
                                         self.normalization, self.topk)
    selection_lib.check_choice("communication", self.communication,
                               COMMUNICATIONS)
    selection_lib.check_choice("aggregation", self.aggregation,
                               NTS_AGGREGATIONS)
    selection_lib.check_choice("padding", self.padding,
                               patches_lib.PADDING_MODES)
    if self.part_size < 1:
      raise ValueError(f"part_size={self.part_size} must be >= 1.")
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool,
               sigma: jax.Array | float = 0.0
               ) -> tuple[jax.Array, NTSNetOutput]:
    """Classifies (b, h, w, c) images: concat logits (b, num_classes), aux."""
    b = images.shape[0]
    feature_map = self.backbone(images, train=train, pool=False)
    raw = ProposalNetwork(self.communication, name="proposal")(
        jax.lax.stop_gradient(feature_map), train=train)
    scores = selection_lib.normalize_scores(raw, self.normalization,
                                            self.normalization_epsilon)
    method = self.selection if train else self.selection_eval
    key = (self.make_rng("selection")
           if method in ("perturbed", "random") else None)
    indicators, indices = self.topk(method, scores, key=key, sigma=sigma)
    if indices is None:
      indices = jnp.argmax(indicators, axis=-1)
    else:
      indicators = ptopk.indicators_from_indices(indices, raw.shape[-1],
                                                 images.dtype)
    parts = part_images(images, indicators, self.part_size, self.padding)

    part_features = self.backbone(
        parts.reshape((b * self.k,) + parts.shape[2:]), train=train)
    drop = nn.Dropout(self.dropout, deterministic=not train)
    part_features = drop(part_features).reshape(b, self.k, -1)
    whole = drop(feature_map.mean(axis=(1, 2)))
    if self.aggregation == "mean":
      combined = whole + part_features.mean(axis=1)
    else:
      combined = jnp.concatenate([whole, part_features.reshape(b, -1)], -1)
    logits = nn.Dense(self.num_classes, name="concat_head")(combined)
    return logits, NTSNetOutput(
        raw_logits=nn.Dense(self.num_classes, name="raw_head")(whole),
        part_logits=nn.Dense(self.num_classes, name="part_head")(
            part_features),
        scores=raw, normalized_scores=scores,
        entropy=selection_lib.softmax_entropy(raw),
        sigma=jnp.asarray(sigma, jnp.float32), indicators=indicators,
        indices=indices, parts=parts)

  def loss(self, logits: jax.Array, aux: NTSNetOutput, labels: jax.Array
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`ntsnet_losses`' sum, and per-example (b,) metrics.

    Returns:
      The scalar loss (without the entropy regulariser), "cross_entropy" (b,)
      (the three heads' sum) and "accuracy" (b,) of the concat logits.
    """
    per_example = sum(_head_losses(logits, aux, labels).values())
    accuracy = (logits.argmax(-1) == labels).astype(jnp.float32)
    return (ntsnet_losses(logits, aux, labels)["loss"],
            {"cross_entropy": per_example, "accuracy": accuracy})


def _head_losses(logits: jax.Array, aux: NTSNetOutput, labels: jax.Array
                 ) -> dict[str, jax.Array]:
  """Per-example (b,) cross entropies of the three heads."""
  ce = optax.softmax_cross_entropy_with_integer_labels
  k = aux.part_logits.shape[1]
  return {
      "loss_raw": ce(aux.raw_logits, labels),
      "loss_concat": ce(logits, labels),
      "loss_part": ce(aux.part_logits,
                      jnp.repeat(labels[:, None], k, axis=1)).mean(axis=1),
  }


def ntsnet_losses(logits: jax.Array, aux: NTSNetOutput, labels: jax.Array,
                  mask: jax.Array | None = None) -> dict[str, jax.Array]:
  """Cross entropies of the three NTS-Net heads and their sum.

  The entropy regulariser on aux.entropy is added by the training loop, as
  for every model.

  Args:
    logits: (b, classes) concat logits.
    aux: the model's `NTSNetOutput` (raw_logits, part_logits are read).
    labels: (b,) integer labels.
    mask: optional (b,) weights (0 for padding examples).

  Returns:
    dict with "loss" = loss_raw + loss_concat + loss_part and the three terms,
    each a (masked) mean over the examples; loss_part also averages the k
    parts.
  """
  per_example = _head_losses(logits, aux, labels)
  if mask is None:
    mask = jnp.ones_like(per_example["loss_raw"])
  denominator = jnp.maximum(mask.sum(), 1.0)
  losses = {name: (value * mask).sum() / denominator
            for name, value in per_example.items()}
  losses["loss"] = sum(losses.values())
  return losses
