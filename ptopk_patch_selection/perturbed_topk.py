# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Perturbed Top-K with the exact perturbed-optimizer gradient.

Scores theta in R^d, noise Z_1..Z_S (standard normal by default). Y(x) in
{0,1}^(k x d) is the hard top-k of x as one-hot rows, sorted by position, so
slot r always holds the r-th selected patch in raster order.

  forward:   Y_bar = (1/S) sum_s Y(theta + sigma Z_s)     (k, d), rows sum to 1
  backward:  grad  = (1/(S sigma)) sum_s <G, Y(theta + sigma Z_s)> nu'(Z_s)

for a cotangent G in R^(k x d), where nu'(z) = z for normal noise and
1 - exp(-z) for Gumbel noise (Berthet et al. 2020, Prop. 3.1; the paper's
eq. 3). <G, Y_s> = sum_r G[r, idx_s[r]] is a gather, so the residuals are the
sampled indices (S, k) and the PRNG key: the noise is regenerated in the
backward pass, chunk by chunk, and no (S, k, d) tensor ever exists. The
conditional estimator (`_conditional_term`) keeps each sample's top-(k+1)
and two order statistics instead, (S, k + 3) numbers, and draws no noise in
the backward pass.

`gradient="diagonal"` reproduces the authors' released estimator,
grad_j = (1/sigma) sum_r G[r, j] E[Y_rj Z_j], which drops every cross term
i != j. It is biased (not even invariant to adding a constant to a row of G)
and is kept only to reproduce and compare against the released behaviour.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

GRADIENTS = ("exact", "diagonal")
NOISES = ("normal", "gumbel")
DEFAULT_CHUNK_SIZE = 16  # samples drawn at once (`perturbed_topk`)
VARIANCE_REDUCTIONS = ("none", "leave_one_out", "antithetic", "conditional")
# The diagonal term reads each sample's own noise only: a baseline on <G, Y_s>
# or the conditional integral has nothing to act on.
DIAGONAL_VARIANCE_REDUCTIONS = ("none", "antithetic")


def topk_indices(scores: jax.Array, k: int) -> jax.Array:
  """Hard top-k of the last axis, sorted by ascending position.

  Args:
    scores: (..., d) scores.
    k: number of entries to keep.

  Returns:
    int32 (..., k) indices into the last axis, in ascending order.
  """
  _, indices = jax.lax.top_k(scores, k)
  return jnp.sort(indices, axis=-1).astype(jnp.int32)


def indicators_from_indices(indices: jax.Array, num_patches: int,
                            dtype: Any = jnp.float32) -> jax.Array:
  """One-hot indicators: (..., k) integer indices -> (..., k, num_patches)."""
  return jax.nn.one_hot(indices, num_patches, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class _Options:
  """Static options of one perturbed Top-K call (hashable for custom_vjp)."""
  k: int
  num_samples: int
  chunk_size: int
  gradient: str
  noise: str
  variance_reduction: str
  shared_noise: bool
  batch: int


def chunk_size_used(num_samples: int, requested: int,
                    antithetic: bool) -> int | None:
  """The samples drawn at once: the largest divisor of num_samples not above
  `requested` (even when antithetic), or None if it is below half of
  min(requested, num_samples): a chunking that would silently run many more,
  smaller steps than asked for (499 samples in chunks of 1, say)."""
  wanted = min(requested, num_samples)
  for size in range(wanted, (wanted + 1) // 2 - 1, -1):
    if num_samples % size == 0 and (not antithetic or size % 2 == 0):
      return size
  return None


def sample_noise(key: jax.Array, shape: tuple[int, ...],
                 kind: str) -> jax.Array:
  """Standard "normal" or "gumbel" noise of `shape`."""
  if kind == "gumbel":
    return jax.random.gumbel(key, shape)
  return jax.random.normal(key, shape)


def inverse_sigma(sigma: jax.Array) -> jax.Array:
  """1 / sigma, and 0 at sigma = 0 (the hard top-k has a zero gradient)."""
  positive = sigma > 0
  return jnp.where(positive, 1.0 / jnp.where(positive, sigma, 1.0), 0.0)


def _noise_chunk(key: jax.Array, chunk: jax.Array, opts: _Options,
                 d: int) -> jax.Array:
  """Noise of samples [chunk * C, (chunk + 1) * C) of one example: (C, d)."""
  key = jax.random.fold_in(key, chunk)
  size = opts.chunk_size
  if opts.variance_reduction == "antithetic":
    half = jax.random.normal(key, (size // 2, d))
    return jnp.concatenate([half, -half], axis=0)
  return sample_noise(key, (size, d), opts.noise)


def noise_score(noise: jax.Array, kind: str) -> jax.Array:
  """nu'(z): gradient of the negative log-density of the noise."""
  if kind == "gumbel":
    return 1.0 - jnp.exp(-noise)
  return noise


def _example_keys(key: jax.Array, b: int, opts: _Options) -> jax.Array:
  """One key per example, or one key (1,) for noise shared by the batch."""
  return key[None] if opts.shared_noise else jax.random.split(key, b)


def _batch_noise(keys, chunk, opts, d):
  """(b, C, d) noise of one chunk, per example or (shared_noise) one (C, d)
  draw broadcast over the batch."""
  noise = jax.vmap(lambda key: _noise_chunk(key, chunk, opts, d))(keys)
  return jnp.broadcast_to(noise, (opts.batch,) + noise.shape[1:])


def _sample_indices(opts: _Options, scores, sigma, keys):
  """Sorted top-k indices of every perturbed sample: (b, S, k) int32; and,
  for the conditional estimator, what its backward pass reads instead of the
  noise: each sample's top-(k+1) by decreasing value (b, S, k + 1) and its
  k-th and (k+1)-th largest perturbed scores (b, S, 2). Else None."""
  b, d = scores.shape
  num_chunks = opts.num_samples // opts.chunk_size
  conditional = opts.variance_reduction == "conditional"

  def one_chunk(chunk):
    x = scores[:, None, :] + sigma * _batch_noise(keys, chunk, opts, d)
    if not conditional:
      return topk_indices(x, opts.k), None
    # The barrier stops XLA from fusing the top-k into its elementwise
    # consumers, which made forward + backward 20-60x slower on CPU.
    values, top = jax.lax.optimization_barrier(jax.lax.top_k(x, opts.k + 1))
    chosen = jnp.sort(top[..., :opts.k], -1).astype(jnp.int32)
    return chosen, (top.astype(jnp.int32), values[..., opts.k - 1:])

  indices, extra = jax.lax.map(one_chunk, jnp.arange(num_chunks))

  def by_sample(x):  # (n, b, C, ...) -> (b, S, ...)
    return jnp.moveaxis(x, 0, 1).reshape(b, opts.num_samples, *x.shape[3:])
  return by_sample(indices), jax.tree.map(by_sample, extra)


def _mean_indicators(indices: jax.Array, d: int) -> jax.Array:
  """(b, S, k) indices -> (b, k, d) selection frequencies, by scatter-add."""
  b, num_samples, k = indices.shape
  batch = jnp.arange(b)[:, None, None]
  slot = jnp.arange(k)[None, None, :]
  counts = jnp.zeros((b, k, d), jnp.int32).at[batch, slot, indices].add(1)
  return counts.astype(jnp.float32) / num_samples


def _forward(opts, scores, sigma, key):
  keys = _example_keys(key, scores.shape[0], opts)
  scores32 = scores.astype(jnp.float32)
  indices, order = _sample_indices(opts, scores32, sigma, keys)
  mean = _mean_indicators(indices, scores.shape[-1]).astype(scores.dtype)
  return mean, (scores32, sigma, keys, indices, order)


def _noise_density(z: jax.Array, kind: str) -> jax.Array:
  """Density of the standard noise distribution.

  Far tails are set to exactly 0 (they are below 1e-30): computing them would
  produce denormal numbers, which are very slow on CPUs.
  """
  if kind == "gumbel":
    low, high = -4.0, 80.0
    inside = jnp.clip(z, low, high)
    density = jnp.exp(-(inside + jnp.exp(-inside)))
  else:
    low, high = -12.0, 12.0
    inside = jnp.clip(z, low, high)
    density = jnp.exp(-0.5 * inside * inside) / jnp.sqrt(2 * jnp.pi)
  return jnp.where((z > low) & (z < high), density, 0.0)


def _conditional_term(top, thresholds, scores, cotangent, safe_sigma,
                      kind):
  """sigma * d<G, Y>/d theta_j given x_{-j}, summed over a chunk: (b, d).

  Conditioned on the other coordinates, Y changes only when x_j crosses
  tau_j, the k-th largest of x_{-j}: then j joins the top-(k-1) of x_{-j}
  ("in") or not ("out"). Hence
    d E[<G, Y>] / d theta_j = E[p((tau_j - theta_j) / sigma) / sigma
                                * (<G, Y_in(j)> - <G, Y_out(j)>)],
  with p the noise density. tau_j is the k-th largest perturbed score x_(k)
  for j outside the selection and x_(k+1) for j inside, so each sample needs
  only its top-(k+1) and those two values, kept by the forward pass: no noise
  is drawn again. Arguments: top (b, C, k + 1) indices by decreasing value,
  thresholds (b, C, 2) = (x_(k), x_(k+1)), scores (b, d), cotangent G
  (b, k, d).
  """
  k, d = cotangent.shape[1:]
  batch = jnp.arange(top.shape[0])[:, None, None]
  slots = jnp.arange(k)
  chosen = jnp.sort(top[..., :k], -1)  # each sample's selection, by position
  current = cotangent[batch, slots, chosen].sum(-1)  # <G, Y_s>: (b, C)

  # j outside the selection: "out" is the current selection; "in" swaps the
  # weakest chosen patch for j. With R the k - 1 others sorted by position
  # and m_j = #{R < j}, <G, Y_in(j)> = A[m_j] + G[m_j, j], where A[m] sums
  # R's entries at their slots, shifted by one for those after j.
  rest = jnp.sort(top[..., :k - 1], -1)
  before = cotangent[batch, slots[:-1], rest]
  after = cotangent[batch, slots[1:], rest]
  zero = jnp.zeros(before.shape[:2] + (1,))
  totals = (jnp.concatenate([zero, jnp.cumsum(before, -1)], -1) +
            jnp.concatenate([jnp.cumsum(after[..., ::-1], -1)[..., ::-1],
                             zero], -1))  # A: (b, C, k)
  slot = (rest[..., :, None] < jnp.arange(d)).sum(-2)  # m_j: (b, C, d)
  at_slot = slot[..., None, :] == slots[:, None]  # (b, C, k, d)
  joined = jnp.where(at_slot, totals[..., None] + cotangent[:, None],
                     0.0).sum(-2)
  density = _noise_density(
      (thresholds[..., :1] - scores[:, None]) / safe_sigma, kind)
  outside = density * (joined - current[..., None])  # (b, C, d)

  # j inside the selection: "in" is the current selection; "out" replaces j
  # by the (k+1)-th largest.
  swapped = jnp.where(chosen[..., None, :] == chosen[..., :, None],
                      top[..., k, None, None], chosen[..., None, :])
  dropped = cotangent[batch[..., None], slots, jnp.sort(swapped, -1)].sum(-1)
  chosen_scores = scores[batch, chosen]  # (b, C, k)
  density = _noise_density((thresholds[..., 1:] - chosen_scores) / safe_sigma,
                           kind)
  inside = density * (current[..., None] - dropped)  # (b, C, k)
  sample = jnp.arange(top.shape[1])[None, :, None]
  return outside.at[batch, sample, chosen].set(inside).sum(1)


def _backward(opts, residuals, cotangent):
  """VJP estimate; every estimator sums (b, d) terms over chunks of samples."""
  scores, sigma, keys, indices, order = residuals
  b, num_samples, k = indices.shape
  d = cotangent.shape[-1]
  cotangent_dtype = cotangent.dtype  # = the scores' dtype
  cotangent = cotangent.astype(jnp.float32)
  size = opts.chunk_size
  num_chunks = num_samples // size
  safe_sigma = jnp.where(sigma > 0, sigma, 1.0)
  # g_at[b, s, r] = G[b, r, idx[b, s, r]].
  g_at = jax.vmap(lambda g, idx: g[jnp.arange(k), idx])(cotangent, indices)
  weights = g_at.sum(-1)  # <G, Y_s>: (b, S)
  if opts.variance_reduction == "leave_one_out":
    # Baseline: mean of the other S - 1 samples (independent of Z_s).
    weights = (weights - weights.mean(1, keepdims=True)) * (
        num_samples / (num_samples - 1))

  def score_function_term(noise, samples):
    return jnp.einsum("bc,bcd->bd", weights[:, samples],
                      noise_score(noise, opts.noise))

  def diagonal_term(noise, samples):
    idx = indices[:, samples]  # (b, C, k)
    z_at = jnp.take_along_axis(noise_score(noise, opts.noise), idx, -1)
    contribution = (z_at * g_at[:, samples]).reshape(b, -1)
    return jnp.zeros((b, d)).at[jnp.arange(b)[:, None],
                                idx.reshape(b, -1)].add(contribution)

  def conditional_term(chunk):
    top, thresholds = (jax.lax.dynamic_slice_in_dim(x, chunk * size, size, 1)
                       for x in order)
    return _conditional_term(top, thresholds, scores, cotangent, safe_sigma,
                             opts.noise)

  def noise_term(chunk):
    samples = jax.lax.dynamic_slice_in_dim(jnp.arange(num_samples),
                                           chunk * size, size)
    noise = _batch_noise(keys, chunk, opts, d)
    if opts.gradient == "diagonal":
      return diagonal_term(noise, samples)
    return score_function_term(noise, samples)

  term = (conditional_term if opts.variance_reduction == "conditional" else
          noise_term)

  def accumulate(grad, chunk):
    return grad + term(chunk), None

  grad, _ = jax.lax.scan(accumulate, jnp.zeros((b, d), jnp.float32),
                         jnp.arange(num_chunks))
  # sigma = 0 is the hard top-k: its gradient is zero, never inf or NaN.
  scale = inverse_sigma(sigma) / num_samples
  return (grad * scale).astype(cotangent_dtype), jnp.zeros_like(sigma), None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _perturbed_topk(opts, scores, sigma, key):
  return _forward(opts, scores, sigma, key)[0]


_perturbed_topk.defvjp(_forward, _backward)


def check_options(*, num_samples: int, gradient: str, noise: str,
                  variance_reduction: str,
                  chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
  """Raises ValueError on options that are unknown or contradict each other;
  the message names each field involved."""
  if chunk_size < 1:
    raise ValueError(f"chunk_size={chunk_size} must be at least 1.")
  if gradient not in GRADIENTS:
    raise ValueError(f"gradient={gradient!r} is not one of {GRADIENTS}.")
  if noise not in NOISES:
    raise ValueError(f"noise={noise!r} is not one of {NOISES}.")
  if variance_reduction not in VARIANCE_REDUCTIONS:
    raise ValueError(f"variance_reduction={variance_reduction!r} is not "
                     f"one of {VARIANCE_REDUCTIONS}.")
  if (gradient == "diagonal" and
      variance_reduction not in DIAGONAL_VARIANCE_REDUCTIONS):
    raise ValueError(
        "gradient='diagonal' ignores variance_reduction="
        f"{variance_reduction!r}; use one of {DIAGONAL_VARIANCE_REDUCTIONS}.")
  if variance_reduction == "antithetic" and noise != "normal":
    raise ValueError("variance_reduction='antithetic' needs noise='normal' "
                     "(Gumbel noise is not symmetric).")
  minimum = 2 if variance_reduction != "none" else 1
  if num_samples < minimum:
    raise ValueError(f"num_samples={num_samples} must be at least "
                     f"{minimum} with variance_reduction="
                     f"{variance_reduction!r}.")
  antithetic = variance_reduction == "antithetic"
  if chunk_size_used(num_samples, chunk_size, antithetic) is None:
    wanted = min(chunk_size, num_samples)
    raise ValueError(
        f"num_samples={num_samples} has no "
        f"{'even ' if antithetic else ''}divisor between "
        f"{(wanted + 1) // 2} and chunk_size={chunk_size}: it would be "
        "drawn in far smaller chunks (more sequential steps) than asked. "
        f"Use a num_samples with such a divisor (e.g. "
        f"{max(wanted, num_samples // wanted * wanted)}) or another "
        "chunk_size.")


def perturbed_topk(scores: jax.Array,
                   key: jax.Array,
                   *,
                   k: int,
                   num_samples: int,
                   sigma: float | jax.Array,
                   gradient: str = "exact",
                   noise: str = "normal",
                   variance_reduction: str = "none",
                   chunk_size: int = DEFAULT_CHUNK_SIZE,
                   shared_noise: bool = False) -> jax.Array:
  """Soft top-k indicators of a batch of scores, differentiable in the scores.

  Each example gets its own noise (the key is split over the batch), unless
  `shared_noise`.

  Args:
    scores: (b, d) scores.
    key: a PRNG key for the whole batch.
    k: number of patches to select, 1 <= k <= d.
    num_samples: S, the number of perturbed samples per example.
    sigma: noise scale, a Python float or a traced scalar (it may decay during
      training); it receives no gradient. sigma = 0 gives the hard top-k and a
      zero gradient. A negative float is an error; a negative traced value
      counts as 0.
    gradient: "exact" (the perturbed-optimizer VJP) or "diagonal" (the biased
      estimator of the authors' released code, for comparison only).
    noise: "normal" or "gumbel".
    variance_reduction: "none"; "leave_one_out" (subtracts from <G, Y_s> the
      mean over the other samples: unbiased, lower variance); or "antithetic"
      (normal noise in pairs Z, -Z; needs an even num_samples); or
      "conditional" (Rao-Blackwellised: for each position j, integrates the
      noise on j exactly given the other coordinates of each sample; unbiased,
      and far lower variance when d is large).
    chunk_size: samples drawn at once, >= 1; bounds the temporary memory to
      O(b * chunk_size * d). The largest divisor of num_samples not above it is
      used (even with antithetic noise); one below half of it is an error
      (`chunk_size_used`). Small chunks stay in cache on CPUs; on
      accelerators a larger value (up to num_samples) gives fewer, bigger
      kernels.
    shared_noise: one draw of the S noise samples for the whole batch
      instead of one per example (common random numbers): each example's
      output and gradient are the same unbiased estimates, correlated across
      the batch, and the noise costs b times less to draw, which is most of
      the forward pass on CPUs (benchmarks/topk_op.py).

  Returns:
    (b, k, d) selection frequencies; row r is the distribution of the r-th
    selected position (in raster order), so every row sums to 1.
  """
  if scores.ndim != 2:
    raise ValueError(f"scores must have shape (batch, d), got {scores.shape}.")
  d = scores.shape[-1]
  if not 1 <= k <= d:
    raise ValueError(f"k={k} must be between 1 and the number of scores {d}.")
  check_options(num_samples=num_samples, gradient=gradient, noise=noise,
                variance_reduction=variance_reduction, chunk_size=chunk_size)
  if variance_reduction == "conditional" and k >= d:
    raise ValueError(f"variance_reduction='conditional' needs k={k} < d={d}.")
  if isinstance(sigma, (int, float)) and sigma < 0:
    raise ValueError(f"sigma={sigma} must be >= 0.")
  antithetic = variance_reduction == "antithetic"
  opts = _Options(k=k, num_samples=num_samples,
                  chunk_size=chunk_size_used(num_samples, chunk_size,
                                             antithetic),
                  gradient=gradient, noise=noise,
                  variance_reduction=variance_reduction,
                  shared_noise=bool(shared_noise), batch=scores.shape[0])
  # A traced sigma (a schedule) cannot be refused here: below 0 it is 0.
  sigma = jax.lax.stop_gradient(
      jnp.maximum(jnp.asarray(sigma, jnp.float32), 0.0))
  return _perturbed_topk(opts, scores, sigma, key)
