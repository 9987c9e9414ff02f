# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of the Sinkhorn (optimal transport) Top-K."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ptopk_patch_selection import perturbed_topk as ptopk
from ptopk_patch_selection import sinkhorn_topk as sinkhorn

B, D, K = 2, 12, 3


@pytest.fixture(name="scores")
def _scores():
  return jax.random.uniform(jax.random.key(0), (B, D))


def _hard_by_value(scores):
  """Hard top-k one-hots with slots in ascending order of value."""
  _, indices = jax.lax.top_k(scores, K)
  return ptopk.indicators_from_indices(indices[:, ::-1], D)


def test_rows_sum_to_one(scores):
  y = sinkhorn.sinkhorn_topk(scores, k=K, epsilon=1e-2, num_iterations=500)
  assert y.shape == (B, K, D)
  np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-4)
  assert np.all(y >= 0)


def test_tends_to_the_hard_topk_as_epsilon_shrinks(scores):
  hard = _hard_by_value(scores)
  errors = [
      float(jnp.abs(sinkhorn.sinkhorn_topk(scores, k=K, epsilon=eps,
                                           num_iterations=2000) - hard).max())
      for eps in (1e-1, 1e-2, 1e-4)
  ]
  assert errors[0] > errors[1] > errors[2]
  assert errors[2] < 1e-3


def test_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    scores = jax.random.uniform(jax.random.key(1), (B, D), dtype=jnp.float64)
    cotangent = jax.random.normal(jax.random.key(2), (B, K, D),
                                  dtype=jnp.float64)

    @jax.jit
    def objective(s):
      y = sinkhorn.sinkhorn_topk(s, k=K, epsilon=0.05, num_iterations=1000)
      return jnp.sum(cotangent * y)

    grad = jax.grad(objective)(scores)
    step = 1e-5
    reference = np.zeros(scores.shape)
    for index in np.ndindex(*scores.shape):
      delta = jnp.zeros(scores.shape, jnp.float64).at[index].set(step)
      reference[index] = (objective(scores + delta) -
                          objective(scores - delta)) / (2 * step)
    np.testing.assert_allclose(grad, reference, rtol=1e-5, atol=1e-7)


def test_jit_and_vmap_compose(scores):
  fn = lambda s: sinkhorn.sinkhorn_topk(s, k=K, epsilon=1e-2,
                                        num_iterations=200)
  batched = jax.jit(jax.vmap(fn))(scores[None])[0]
  np.testing.assert_allclose(batched, fn(scores), rtol=1e-5, atol=1e-6)


def test_invalid_arguments_raise(scores):
  with pytest.raises(ValueError, match="k=12"):
    sinkhorn.sinkhorn_topk(scores, k=D)
  with pytest.raises(ValueError, match="epsilon"):
    sinkhorn.sinkhorn_topk(scores, k=K, epsilon=0.0)
