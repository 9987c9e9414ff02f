# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The released code's formulations, written here from their description.

These are the baselines that benchmarks compare against: the released
lib/ops/perturbed_topk.py and the soft extraction of
lib/layers/sample_patches.py (docs/operator.md, docs/differences.md). They
are not part of the library: they keep the (S, k, d) one-hot samples as
residuals, compute only the diagonal term of the gradient, and extract soft
patches with a scan over every candidate position.
"""

import functools

import jax
import jax.numpy as jnp

from ptopk_patch_selection import patches
from ptopk_patch_selection import perturbed_topk as ptopk


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _released_single(scores, sigma, key, k, num_samples):
  return _released_fwd(scores, sigma, key, k, num_samples)[0]


def _released_fwd(scores, sigma, key, k, num_samples):
  noise = jax.random.normal(key, (num_samples, scores.shape[-1]))
  samples = jax.vmap(
      lambda x: ptopk.indicators_from_indices(ptopk.topk_indices(x, k),
                                              scores.shape[-1]))(
                                                  scores + sigma * noise)
  return samples.mean(0), (samples, noise, sigma)


def _released_bwd(k, num_samples, residuals, cotangent):
  del k, num_samples
  samples, noise, sigma = residuals  # (S, k, d), (S, d), ()
  expectation = jnp.mean(samples * noise[:, None, :], axis=0) / sigma
  return jnp.sum(cotangent * expectation, axis=0), None, None


_released_single.defvjp(_released_fwd, _released_bwd)


def released_perturbed_topk(scores, key, *, k, num_samples, sigma):
  """Released operator: (b, d) -> (b, k, d), stored one-hots, diagonal VJP."""
  keys = jax.random.split(key, scores.shape[0])
  return jax.vmap(lambda x, kk: _released_single(x, sigma, kk, k, num_samples))(
      scores, keys)


def released_extract_patches_scan(images, indicators, grid: patches.PatchGrid):
  """Released soft extraction: scan over all d positions, (b, k, p, p, c)."""
  p = grid.patch_size
  (gh, gw), (sh, sw) = grid.grid_size, grid.stride
  padded = patches.aligned_image(images, grid, (gh - 1) * sh + p,
                                 (gw - 1) * sw + p)
  b, k, c = images.shape[0], indicators.shape[1], images.shape[-1]

  def add_position(accumulator, j):
    row, col = jnp.divmod(j, gw)
    patch = jax.lax.dynamic_slice(padded, (0, row * sh, col * sw, 0),
                                  (b, p, p, c))
    weight = indicators[:, :, j][:, :, None, None, None]
    return accumulator + weight * patch[:, None], None

  patches_out, _ = jax.lax.scan(add_position, jnp.zeros((b, k, p, p, c)),
                                jnp.arange(grid.num_patches))
  return patches_out
