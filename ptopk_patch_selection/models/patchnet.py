# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""PatchNet (the paper's model) and the whole-image baseline.

PatchNet on images (b, h, w, c):
  1. downscale by `downscale` (bilinear, antialiased) and score:
     raw scores (b, H', W'), one per candidate patch of the grid, d = H' W';
  2. normalise the flat scores (b, d) and select k patches: soft indicators
     (b, k, d) for "perturbed" / "sinkhorn", indices (b, k) for "hard" /
     "random" (`selection` in training, `selection_eval` at evaluation);
  3. optionally append 2 position channels (row, column in [0, 1]);
  4. extract the k full-resolution patches (b, k, p, p, c): by index for a
     hard selection, as indicator-weighted sums of all candidate patches for a
     soft one (differentiable in the indicators; in training, with
     `patch_dropout`, of the candidates that survive inverted dropout);
  5. embed each patch with the feature network, (b, k, D), aggregate to
     (b, D') and classify with Dense(D') -> swish -> Dense(num_classes).

Randomness: the selection noise and random patches come from the "selection"
RNG stream, dropout (patch dropout included) from "dropout"; evaluation with
"hard" needs neither.
"""

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from ptopk_patch_selection import patches as patches_lib
from ptopk_patch_selection import perturbed_topk as ptopk
from ptopk_patch_selection import score_function
from ptopk_patch_selection.models import scorer as scorer_lib
from ptopk_patch_selection.models import selection as selection_lib

PATCH_GRIDS = ("released", "scorer")
TRAIN_PATCHES = ("soft", "sampled", "score_function")
SOFT_EXTRACTORS = {
    "matmul": patches_lib.extract_patches_matmul,
    "scan": patches_lib.extract_patches_scan,
}


@flax.struct.dataclass
class PatchNetOutput(selection_lib.SelectionOutput):
  """PatchNet's auxiliary output: the grid's selection, scores (b, H', W').

  Attributes:
    patches: (b, [m,] k, p, p, c) as extracted, without position channels.
    selection_noise: with train_patches="score_function" in training, the
      (b, m, d) noise that made the m selections; None otherwise.
  """
  patches: jax.Array
  selection_noise: jax.Array | None = None

  def pictures(self) -> dict[str, jax.Array]:
    """What an evaluation picture draws (`visualization.selection_picture`):
    scores (b, H', W'), indices (b, k), patches (b, k, p, p, c)."""
    return {"scores": self.scores, "indices": self.indices,
            "patches": self.patches}


@flax.struct.dataclass
class WholeImageOutput:
  """The whole-image baseline's auxiliary output.

  Attributes:
    entropy: 0 (there is no scorer), so that a training loop adds the entropy
      regulariser to every model alike.
  """
  entropy: jax.Array

  def pictures(self) -> dict[str, jax.Array]:
    """Nothing is selected, so nothing to draw."""
    return {}


def classification_loss(logits: jax.Array, labels: jax.Array
                        ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Cross entropies of logits (b, [m,] classes) and per-example metrics.

  Args:
    logits: (b, classes), or (b, m, classes) for m readings per example.
    labels: (b,) integer labels.

  Returns:
    The cross entropies (b, [m]) and {"cross_entropy", "accuracy"}, each
    (b,), averaged over the m readings.
  """
  labels = jnp.broadcast_to(
      labels.reshape(labels.shape + (1,) * (logits.ndim - 2)),
      logits.shape[:-1])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = (logits.argmax(-1) == labels).astype(jnp.float32)
  b = labels.shape[0]
  return losses, {"cross_entropy": losses.reshape(b, -1).mean(-1),
                  "accuracy": correct.reshape(b, -1).mean(-1)}


def downscale_images(images: jax.Array, downscale: int) -> jax.Array:
  """(b, h, w, c) -> (b, h // downscale, w // downscale, c), antialiased."""
  if downscale == 1:
    return images
  b, h, w, c = images.shape
  return jax.image.resize(images, (b, h // downscale, w // downscale, c),
                          "bilinear", antialias=True)


def append_position_channels(images: jax.Array) -> jax.Array:
  """Appends (row, column) coordinates in [0, 1]: (b, h, w, c + 2)."""
  b, h, w, _ = images.shape
  rows, cols = jnp.meshgrid(jnp.linspace(0.0, 1.0, h),
                            jnp.linspace(0.0, 1.0, w), indexing="ij")
  position = jnp.stack([rows, cols], axis=-1).astype(images.dtype)
  return jnp.concatenate(
      [images, jnp.broadcast_to(position, (b, h, w, 2))], axis=-1)


WHOLE_IMAGE_HEADS = ("mlp", "linear")


class ClassifierHead(nn.Module):
  """Dense(D) -> swish -> Dense(num_classes) on a representation (b, D).

  With hidden=False only the last Dense(num_classes) (the released
  whole-image baseline's head).
  """
  num_classes: int
  hidden: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.hidden:
      x = nn.swish(nn.Dense(x.shape[-1], name="hidden")(x))
    return nn.Dense(self.num_classes, name="logits")(x)


class PatchNet(nn.Module):
  """Differentiable patch selection: image -> (logits, aux).

  Attributes:
    num_classes: number of classes.
    k: number of selected patches.
    patch_size: side of the square full-resolution patches.
    downscale: the scorer sees the image downscaled by this factor.
    scorer: a `Scorer`.
    feature_network: maps (n, p, p, c) patches to (n, D) features.
    aggregator: maps (b, k, D) embeddings and (b, k, d) indicators to (b, D').
    topk: the Top-K options (`selection.TopK`).
    selection: method in training (`selection.SELECTIONS`).
    selection_eval: method at evaluation.
    normalization: score normalisation (`selection.NORMALIZATIONS`).
    normalization_epsilon: epsilon of the "minmax" normalisation.
    patch_padding: "constant", "edge" or "reflect" outside the image.
    soft_extractor: a key of `SOFT_EXTRACTORS`.
    patch_grid: where candidate patch (i, j) lies (`PATCH_GRIDS`):
      "released" (stride h // H', as the released code) or "scorer"
      (centred where score (i, j) looked; see `patches.PatchGrid`).
    append_position: append 2 position channels before extraction.
    hard_topk_probability: in training, per example, use the hard Top-K
      instead of a soft selection with this probability.
    random_patch_probability: in training, per slot, replace the selected
      patch with a random patch not already selected with this probability.
    train_patches: what a perturbed selection extracts in training
      (`TRAIN_PATCHES`). "soft" (the paper): each slot's patch is the
      indicator-weighted blend of candidate patches. "sampled": the clean
      patches of one perturbed sample, Y(theta + sigma Z), with the gradient
      of the perturbed mean (straight-through: Y + Y_bar -
      stop_gradient(Y_bar)); the feature
      network then sees in training the kind of patches it sees at
      evaluation. "score_function": the clean patches of `loss_samples`
      perturbed samples per example, logits (b, loss_samples, classes); the
      scorer's gradient comes from the losses of those selections
      (`score_function.expected_loss_surrogate`, added by `loss`), not
      through the patches.
    loss_samples: selections per example with train_patches="score_function".
    patch_dropout: in training, each example's candidate patches are kept
      with probability 1 - patch_dropout and the kept ones scaled by
      1 / (1 - patch_dropout) (inverted dropout, one mask for all k slots)
      before the soft patches blend them; the aggregator still sees the
      undropped indicators. Hard patches (indices) never use it.
  """
  num_classes: int
  k: int
  patch_size: int
  downscale: int
  scorer: nn.Module
  feature_network: nn.Module
  aggregator: nn.Module
  topk: selection_lib.TopK
  selection: str = "perturbed"
  selection_eval: str = "hard"
  normalization: str = "minmax"
  normalization_epsilon: float = 1e-5
  patch_padding: str = "constant"
  soft_extractor: str = "matmul"
  patch_grid: str = "released"
  append_position: bool = False
  hard_topk_probability: float = 0.0
  random_patch_probability: float = 0.0
  train_patches: str = "soft"
  loss_samples: int = 4
  patch_dropout: float = 0.0

  def __post_init__(self):
    selection_lib.check_selection_fields(
        self.selection, self.selection_eval, self.normalization, self.topk,
        operator_in_training=self.train_patches != "score_function")
    check = selection_lib.check_choice
    check("patch_padding", self.patch_padding, patches_lib.PADDING_MODES)
    check("soft_extractor", self.soft_extractor, tuple(SOFT_EXTRACTORS))
    check("patch_grid", self.patch_grid, PATCH_GRIDS)
    check("train_patches", self.train_patches, TRAIN_PATCHES)
    if self.train_patches != "soft" and self.selection != "perturbed":
      raise ValueError(
          f"train_patches={self.train_patches!r} acts on a perturbed "
          f"selection; with selection={self.selection!r} it would be "
          "ignored: use train_patches='soft' or selection='perturbed'.")
    for name in ("hard_topk_probability", "random_patch_probability"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1].")
    if self.train_patches == "score_function":
      if self.loss_samples < 2:
        raise ValueError(f"loss_samples={self.loss_samples} must be >= 2 "
                         "with train_patches='score_function' (leave-one-out "
                         "baseline).")
      if self.hard_topk_probability or self.random_patch_probability:
        raise ValueError(
            "hard_topk_probability and random_patch_probability must be 0 "
            "with train_patches='score_function'.")
    self._check_patch_dropout()
    super().__post_init__()

  def _check_patch_dropout(self):
    """patch_dropout is in [0, 1) and acts on soft training patches."""
    rate = self.patch_dropout
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"patch_dropout={rate} must be in [0, 1).")
    if rate and self.selection in selection_lib.HARD_SELECTIONS:
      raise ValueError(
          f"patch_dropout={rate} would be ignored with selection="
          f"{self.selection!r}: hard training patches are cut by index. Set "
          "patch_dropout=0 or a soft selection.")
    if rate and self.train_patches == "score_function":
      raise ValueError(
          f"patch_dropout={rate} would be ignored with "
          "train_patches='score_function': its training patches are cut by "
          "index. Set patch_dropout=0 or another train_patches.")

  def _sampled_straight_through(self, indicators, scores, sigma):
    """One perturbed sample's one-hots, with the gradient of `indicators`."""
    indices, _ = score_function.sample_perturbed_indices(
        self.make_rng("selection"), scores, self.k, sigma, self.topk.noise)
    sample = ptopk.indicators_from_indices(indices, scores.shape[-1],
                                           indicators.dtype)
    return sample + indicators - jax.lax.stop_gradient(indicators)

  def _select(self, method, scores, sigma, train):
    """(indicators, indices) of the k patches; see `selection.TopK`."""
    needs_key = method in ("perturbed", "random")
    key = self.make_rng("selection") if needs_key else None
    indicators, indices = self.topk(method, scores, key=key, sigma=sigma)
    if train and method == "perturbed" and self.train_patches == "sampled":
      indicators = self._sampled_straight_through(indicators, scores, sigma)
    if train and self.hard_topk_probability > 0 and indicators is not None:
      indicators = selection_lib.mix_in_hard_topk(
          self.make_rng("selection"), indicators, scores,
          self.hard_topk_probability)
    if train and self.random_patch_probability > 0 and method != "random":
      indicators, indices = selection_lib.mix_in_random_patches(
          self.make_rng("selection"), indicators, indices, scores,
          self.random_patch_probability)
    return indicators, indices

  def setup(self):
    self.head = ClassifierHead(self.num_classes)
    # (b, k, d) weights: one mask (b, 1, d) of candidates for all k slots.
    self.candidate_dropout = nn.Dropout(self.patch_dropout,
                                        broadcast_dims=(1,))

  def candidate_grid(self,
                     image_size: tuple[int, int]) -> patches_lib.PatchGrid:
    """The candidate patches of an (h, w) image (`patch_grid` field)."""
    grid_size = scorer_lib.Scorer.grid_size(image_size, self.downscale)
    cell_stride = (scorer_lib.Scorer.cell_stride(self.downscale)
                   if self.patch_grid == "scorer" else None)
    return patches_lib.PatchGrid(tuple(image_size), grid_size,
                                 self.patch_size, cell_stride)

  def read(self, images: jax.Array, *, train: bool,
           indices: jax.Array | None = None,
           indicators: jax.Array | None = None
           ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Classifies images from k selected patches: steps 3-5 above.

    Args:
      images: (b, h, w, c) full-resolution images.
      train: training mode (BatchNorm statistics, dropout).
      indices: (b, [m,] k) patch indices of hard selections, or None.
      indicators: (b, k, d) soft indicators, used when `indices` is None.

    Returns:
      logits (b, [m,] num_classes), the indicators (b, [m,] k, d) (one-hot
      for indices) and the patches (b, [m,] k, p, p, c) as extracted.
    """
    b = images.shape[0]
    grid = self.candidate_grid(images.shape[1:3])
    inputs = append_position_channels(images) if self.append_position else (
        images)
    if indices is not None:
      # (b, [m,] k) indices: every selection cuts from its own image.
      extracted = patches_lib.extract_patches_from_indices(
          inputs, indices.reshape(b, -1), grid, self.patch_padding)
      indicators = ptopk.indicators_from_indices(indices, grid.num_patches,
                                                 jnp.float32)
      selections = indices.shape
    else:
      weights = self.candidate_dropout(indicators, deterministic=not train)
      extracted = SOFT_EXTRACTORS[self.soft_extractor](
          inputs, weights, grid, self.patch_padding)
      selections = indicators.shape[:-1]
    p = self.patch_size
    # The reader and aggregator compute in the images' dtype (bfloat16 with
    # config.half_precision); the selection stays float32.
    features = self.feature_network(
        extracted.reshape((-1, p, p, extracted.shape[-1])).astype(
            images.dtype), train=train)
    embeddings = features.reshape(-1, self.k, features.shape[-1])
    representation = self.aggregator(
        embeddings, indicators.reshape(embeddings.shape[:2] + (-1,)).astype(
            embeddings.dtype), train=train)
    logits = self.head(representation)
    patches = extracted.reshape(selections + (p, p, -1))
    return (logits.reshape(selections[:-1] + (self.num_classes,)),
            indicators, patches[..., :images.shape[-1]])

  def __call__(self, images: jax.Array, *, train: bool,
               sigma: jax.Array | float = 0.0
               ) -> tuple[jax.Array, PatchNetOutput]:
    """Classifies (b, h, w, c) images.

    Args:
      images: (b, h, w, c) full-resolution images.
      train: training mode (selection, BatchNorm statistics, dropout).
      sigma: perturbed Top-K noise scale (a traced scalar that decays).

    Returns:
      logits (b, num_classes) and a `PatchNetOutput`. With
      train_patches="score_function" in training, m = loss_samples
      selections per example: logits (b, m, num_classes).
    """
    b = images.shape[0]
    if self.selection == self.selection_eval == "random":
      # The random-patch baseline: no scorer, uniform (zero) scores.
      raw = jnp.zeros((b,) + self.candidate_grid(images.shape[1:3]).grid_size,
                      jnp.float32)
    else:  # the operator sees float32 scores, whatever the scorer's dtype
      raw = self.scorer(downscale_images(images, self.downscale)).astype(
          jnp.float32)
    grid_h, grid_w = raw.shape[1:]
    flat = raw.reshape(b, grid_h * grid_w)
    scores = selection_lib.normalize_scores(flat, self.normalization,
                                            self.normalization_epsilon)
    method = self.selection if train else self.selection_eval
    noise = None
    if (train and method == "perturbed" and
        self.train_patches == "score_function"):
      indices, noise = score_function.sample_perturbed_indices(
          self.make_rng("selection"), scores, self.k, sigma, self.topk.noise,
          self.loss_samples)
      indicators = None
    else:
      indicators, indices = self._select(method, scores, sigma, train)
    logits, indicators, patches = self.read(
        images, train=train, indices=indices, indicators=indicators)
    if indices is None:
      indices = jnp.argmax(indicators, axis=-1)
    return logits, PatchNetOutput(
        scores=raw, normalized_scores=scores.reshape(b, grid_h, grid_w),
        entropy=selection_lib.softmax_entropy(flat),
        sigma=jnp.asarray(sigma, jnp.float32), indicators=indicators,
        indices=indices, patches=patches, selection_noise=noise)

  def loss(self, logits: jax.Array, aux: PatchNetOutput, labels: jax.Array
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross entropy, plus the score-function surrogate when trained so.

    Args:
      logits: (b, [m,] num_classes) from `__call__`.
      aux: its `PatchNetOutput`.
      labels: (b,) integer labels.

    Returns:
      The scalar training loss (without the entropy regulariser) and the
      per-example (b,) "cross_entropy" and "accuracy".
    """
    losses, metrics = classification_loss(logits, labels)
    loss = losses.mean()
    if aux.selection_noise is not None:  # (b, m) losses of m selections
      scores = aux.normalized_scores
      loss += score_function.expected_loss_surrogate(
          scores.reshape(scores.shape[0], -1), aux.selection_noise, losses,
          aux.sigma, self.topk.noise)
    return loss, metrics


class WholeImageClassifier(nn.Module):
  """Baseline: the feature network on the whole (downscaled) image.

  Attributes:
    num_classes: number of classes.
    feature_network: maps (b, h, w, c) images to (b, D) features.
    downscale: resize the image by 1/downscale first (1: full resolution).
    append_position: append 2 position channels (after downscaling).
    head: "mlp" (ours: PatchNet's Dense -> swish -> Dense head, so both
      models classify alike) or "linear" (released: one Dense on the
      features).
  """
  num_classes: int
  feature_network: nn.Module
  downscale: int = 1
  append_position: bool = False
  head: str = "mlp"

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool,
               sigma: jax.Array | float = 0.0
               ) -> tuple[jax.Array, WholeImageOutput]:
    """(b, h, w, c) -> logits (b, num_classes) and a `WholeImageOutput`."""
    del sigma  # No selection; same signature as PatchNet.
    x = downscale_images(images, self.downscale)
    if self.append_position:
      x = append_position_channels(x)
    features = self.feature_network(x, train=train)
    logits = ClassifierHead(self.num_classes, hidden=self.head == "mlp",
                            name="head")(features)
    return logits, WholeImageOutput(entropy=jnp.zeros((), jnp.float32))

  def loss(self, logits: jax.Array, aux: WholeImageOutput, labels: jax.Array
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross entropy and per-example metrics; see `PatchNet.loss`."""
    del aux  # Nothing but the logits to learn from.
    losses, metrics = classification_loss(logits, labels)
    return losses.mean(), metrics
