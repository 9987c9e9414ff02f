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


@pytest.mark.parametrize("form,epsilon", [("scaled", 0.05),
                                           ("released", 0.5)])
def test_gradient_matches_finite_differences(form, epsilon):
  """Converged, the implicit gradient is exact (the released form at a
  moderate epsilon, where its fixed-epsilon iterations converge)."""
  with jax.enable_x64(True):
    scores = jax.random.uniform(jax.random.key(1), (B, D), dtype=jnp.float64)
    cotangent = jax.random.normal(jax.random.key(2), (B, K, D),
                                  dtype=jnp.float64)

    @jax.jit
    def objective(s):
      y = sinkhorn.sinkhorn_topk(s, k=K, epsilon=epsilon, num_iterations=1000,
                                 form=form)
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
  with pytest.raises(ValueError, match="form"):
    sinkhorn.sinkhorn_topk(scores, k=K, form="unrolled")


def _released_by_hand(x, k, epsilon, num_iterations):
  """The released Sinkhorn Top-K in the plain (not log) domain, in numpy.

  Targets 0..k, a = 1/d, b = ((d - k)/d, 1/d, ..., 1/d), K = exp(-C / eps),
  v = 1 (zero potentials), then per iteration u = a / (K v), v = b / (K^T u);
  the output is d * (diag(u) K diag(v))[:, 1:] transposed.
  """
  x = np.asarray(x, np.float64)
  d = len(x)
  kernel = np.exp(-(x[:, None] - np.arange(k + 1.0)[None]) ** 2 / epsilon)
  a = np.full(d, 1 / d)
  b = np.concatenate([[(d - k) / d], np.full(k, 1 / d)])
  v = np.ones(k + 1)
  for _ in range(num_iterations):
    u = a / (kernel @ v)
    v = b / (kernel.T @ u)
  return d * (u[:, None] * kernel * v[None])[:, 1:].T


def test_released_form_matches_a_hand_computed_case():
  """d = 3, k = 1, eps = 0.5, one iteration, worked by hand.

  x = (0.2, 0.9, 0.5), targets (0, 1): K = exp(-2 (x_i - y_j)^2) =
  ((.9231, .2780), (.1979, .9802), (.6065, .6065)); u_i = (1/3) / sum_j K_ij
  = (.27751, .28294, .27479); v_1 = (1/3) / sum_i K_i1 u_i = .63960; the
  output 3 u_i K_i1 v_1 = (.14805, .53215, .31980).
  """
  with jax.enable_x64(True):
    scores = jnp.array([[0.2, 0.9, 0.5]], jnp.float64)
    released = sinkhorn.sinkhorn_topk(scores, k=1, epsilon=0.5,
                                      num_iterations=1, form="released")
    np.testing.assert_allclose(released[0], [[0.14805, 0.53215, 0.31980]],
                               atol=1e-5)
    np.testing.assert_allclose(
        released[0], _released_by_hand([0.2, 0.9, 0.5], 1, 0.5, 1),
        rtol=1e-10)
    # k = 2 (targets 0, 1, 2), three iterations.
    released = sinkhorn.sinkhorn_topk(scores, k=2, epsilon=0.5,
                                      num_iterations=3, form="released")
    np.testing.assert_allclose(
        released[0], _released_by_hand([0.2, 0.9, 0.5], 2, 0.5, 3),
        rtol=1e-10)
    # Ours (targets j / k, epsilon scaling) is a different operator.
    scaled = sinkhorn.sinkhorn_topk(scores, k=2, epsilon=0.5,
                                    num_iterations=3)
    assert np.abs(np.asarray(scaled - released)).max() > 0.05


@pytest.mark.parametrize("form", sinkhorn.FORMS)
def test_gradient_is_finite_when_a_slot_is_hard(form):
  """A well-separated top score makes its slot a one-hot: the k x k system
  of the implicit backward is then singular (its slot decouples), and a
  plain solve gave NaN. The gradient is the least-squares one, ~0 here."""
  scores = jnp.array([[0.1, 0.2, 0.3, 0.95]])
  cotangent = jnp.array([[[0.3, -1.0, 0.5, 2.0]]])
  grad = jax.grad(lambda s: jnp.sum(cotangent * sinkhorn.sinkhorn_topk(
      s, k=1, epsilon=1e-3, num_iterations=200, form=form)))(scores)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad, 0.0, atol=1e-3)
