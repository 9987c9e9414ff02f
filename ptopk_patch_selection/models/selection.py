# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""From flat scores (b, d) to selected patches: normalisation and Top-K.

Shared by PatchNet (a grid of patches) and NTS-Net (a set of anchors).

Selection methods:
  * "perturbed": perturbed Top-K (perturbed_topk.py), soft (b, k, d)
    indicators with the exact gradient; slots sorted by position.
  * "sinkhorn": optimal-transport Top-K (sinkhorn_topk.py), soft indicators;
    slots sorted by value.
  * "hard": hard Top-K indices (b, k), sorted by position; no gradient.
  * "random": k distinct uniformly random indices, sorted by position.
"""

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from ptopk_patch_selection import perturbed_topk as ptopk
from ptopk_patch_selection import sinkhorn_topk

NORMALIZATIONS = ("minmax", "identity", "softmax")
SELECTIONS = ("perturbed", "sinkhorn", "hard", "random")
HARD_SELECTIONS = ("hard", "random")


def check_choice(field: str, value: str, choices) -> None:
  """ValueError naming `field` unless value is one of `choices`."""
  if value not in choices:
    raise ValueError(f"{field}={value!r} is not one of {tuple(choices)}.")


def check_selection_fields(selection: str, selection_eval: str,
                           normalization: str, topk: "TopK",
                           operator_in_training: bool = True) -> None:
  """The selection fields of PatchNet and NTSNet (ValueError naming the
  field): methods and normalisation; random selection, which trains no
  scorer, at evaluation too; and `topk.shared_noise` only where a perturbed
  Top-K draws noise, in training (selection, unless the model trains without
  the operator: `operator_in_training=False`) or at evaluation."""
  check_choice("selection", selection, SELECTIONS)
  check_choice("selection_eval", selection_eval, SELECTIONS)
  check_choice("normalization", normalization, NORMALIZATIONS)
  if selection == "random" and selection_eval != "random":
    raise ValueError(
        "selection='random' trains no scorer, so selection_eval="
        f"{selection_eval!r} would evaluate an untrained one: set "
        "selection_eval='random'.")
  draws_noise = ((selection == "perturbed" and operator_in_training) or
                 selection_eval == "perturbed")
  if topk.shared_noise and not draws_noise:
    why = "" if operator_in_training else (
        " (score-function training draws its own samples)")
    raise ValueError(
        f"shared_noise=True would be ignored: selection={selection!r} and "
        f"selection_eval={selection_eval!r} run no perturbed Top-K{why}. "
        "Set shared_noise=False.")


@flax.struct.dataclass
class SelectionOutput:
  """What a model that selects k of d candidates returns beside its logits.

  [m,] marks several selections per example (PatchNet's score-function
  training); the model's own output class adds what it reads.

  Attributes:
    scores: raw scores, (b, d) or a (b, H', W') grid.
    normalized_scores: the scores after `normalize_scores`, same shape.
    entropy: batch mean of the entropy of softmax(raw scores), the
      regulariser's input.
    sigma: the noise scale used, float32 scalar.
    indicators: (b, [m,] k, d) indicators (one-hot for a hard selection).
    indices: (b, [m,] k) indices (for a soft selection, the most likely
      candidate of each slot).
  """
  scores: jax.Array
  normalized_scores: jax.Array
  entropy: jax.Array
  sigma: jax.Array
  indicators: jax.Array
  indices: jax.Array


def normalize_scores(scores: jax.Array, method: str,
                     epsilon: float = 1e-5) -> jax.Array:
  """Per-example normalisation of (b, d) scores.

  "minmax": (x - min x) / (max x - min x + epsilon), in [0, 1); "identity";
  "softmax": softmax over the d scores.
  """
  if method == "minmax":
    low = scores.min(axis=-1, keepdims=True)
    high = scores.max(axis=-1, keepdims=True)
    return (scores - low) / (high - low + epsilon)
  if method == "identity":
    return scores
  if method == "softmax":
    return jax.nn.softmax(scores, axis=-1)
  raise ValueError(f"normalization={method!r} is not one of {NORMALIZATIONS}.")


def softmax_entropy(scores: jax.Array) -> jax.Array:
  """Mean over the batch of H(softmax(scores)) = -sum_i p_i log p_i; (b, d)."""
  log_p = jax.nn.log_softmax(scores, axis=-1)
  return -(jnp.exp(log_p) * log_p).sum(axis=-1).mean()


def random_indices(key: jax.Array, batch: int, num_patches: int, k: int,
                   exclude: jax.Array | None = None) -> jax.Array:
  """k distinct uniform indices per example, (batch, k), sorted by position.

  Indices in `exclude` (batch, m) are drawn only once every other index is
  taken (that is, never when num_patches - m >= k).
  """
  keys = jax.random.uniform(key, (batch, num_patches))
  if exclude is not None:
    keys = keys.at[jnp.arange(batch)[:, None], exclude].set(-1.0)
  return ptopk.topk_indices(keys, k)


@dataclasses.dataclass(frozen=True)
class TopK:
  """Options of the Top-K selection of k among d scores.

  Attributes:
    k: number of selected patches.
    num_samples, gradient, noise, variance_reduction, chunk_size,
      shared_noise: options of `perturbed_topk.perturbed_topk`.
    sinkhorn_epsilon, sinkhorn_iterations, sinkhorn_form: options of
      `sinkhorn_topk.sinkhorn_topk`.
  """
  k: int
  num_samples: int = 500
  gradient: str = "exact"
  noise: str = "normal"
  variance_reduction: str = "conditional"
  chunk_size: int = 16
  shared_noise: bool = False
  sinkhorn_epsilon: float = 1e-4
  sinkhorn_iterations: int = 2000
  sinkhorn_form: str = "scaled"

  def __post_init__(self):
    if self.k < 1:
      raise ValueError(f"k={self.k} must be at least 1.")
    ptopk.check_options(num_samples=self.num_samples, gradient=self.gradient,
                        noise=self.noise,
                        variance_reduction=self.variance_reduction,
                        chunk_size=self.chunk_size)
    check_choice("sinkhorn_form", self.sinkhorn_form, sinkhorn_topk.FORMS)
    if self.sinkhorn_epsilon <= 0:
      raise ValueError(f"sinkhorn_epsilon={self.sinkhorn_epsilon} must be "
                       "> 0.")

  def __call__(self, method: str, scores: jax.Array, *,
               key: jax.Array | None, sigma: jax.Array | float
               ) -> tuple[jax.Array | None, jax.Array | None]:
    """Selects k of the d scores (b, d) with `method`.

    Args:
      method: one of SELECTIONS.
      scores: (b, d) normalised scores.
      key: PRNG key, needed by "perturbed" and "random".
      sigma: noise scale of "perturbed" (a traced scalar; no gradient).

    Returns:
      (indicators, indices): soft (b, k, d) indicators and None for
      "perturbed" and "sinkhorn"; None and (b, k) int32 indices otherwise.
    """
    b, d = scores.shape
    if method == "perturbed":
      return ptopk.perturbed_topk(
          scores, key, k=self.k, num_samples=self.num_samples, sigma=sigma,
          gradient=self.gradient, noise=self.noise,
          variance_reduction=self.variance_reduction,
          chunk_size=self.chunk_size, shared_noise=self.shared_noise), None
    if method == "sinkhorn":
      return sinkhorn_topk.sinkhorn_topk(
          scores, k=self.k, epsilon=self.sinkhorn_epsilon,
          num_iterations=self.sinkhorn_iterations,
          form=self.sinkhorn_form), None
    if method == "hard":
      return None, ptopk.topk_indices(jax.lax.stop_gradient(scores), self.k)
    if method == "random":
      return None, random_indices(key, b, d, self.k)
    raise ValueError(f"selection={method!r} is not one of {SELECTIONS}.")


def mix_in_hard_topk(key: jax.Array, indicators: jax.Array,
                     scores: jax.Array, probability: float) -> jax.Array:
  """Replaces each example's soft indicators by its hard Top-K w.p. p.

  The scorer gets no gradient from the replaced examples.
  """
  b, k, d = indicators.shape
  hard = ptopk.indicators_from_indices(
      ptopk.topk_indices(jax.lax.stop_gradient(scores), k), d,
      indicators.dtype)
  use_hard = jax.random.bernoulli(key, probability, (b, 1, 1))
  return jnp.where(use_hard, hard, indicators)


def mix_in_random_patches(key: jax.Array, indicators: jax.Array | None,
                          indices: jax.Array | None, scores: jax.Array,
                          probability: float
                          ) -> tuple[jax.Array | None, jax.Array | None]:
  """Replaces each slot w.p. p by a random patch not already selected.

  The replacements are k distinct patches per example drawn outside the
  selection: outside `indices` for a hard selection, outside the hard Top-K
  of `scores` (where soft indicators concentrate) for a soft one. So no patch
  appears twice unless d < 2k. Exactly one of indicators (b, k, d) and
  indices (b, k) is given; the same one is returned, the other is None.
  """
  b, d = scores.shape
  k = (indices if indices is not None else indicators).shape[1]
  selection_key, slot_key = jax.random.split(key)
  selected = (indices if indices is not None else
              ptopk.topk_indices(jax.lax.stop_gradient(scores), k))
  replacements = random_indices(selection_key, b, d, k, exclude=selected)
  replace = jax.random.bernoulli(slot_key, probability, (b, k))
  if indices is not None:
    return None, jnp.where(replace, replacements, indices)
  random_rows = ptopk.indicators_from_indices(replacements, d,
                                              indicators.dtype)
  return jnp.where(replace[..., None], random_rows, indicators), None
