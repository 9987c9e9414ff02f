# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of the perturbed Top-K operator: values, gradients, memory, devices.

Also of score_function.py, which shares the finite-difference checks.
"""


import jax
import jax.numpy as jnp
import numpy as np
import optax.perturbations
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ptopk_patch_selection import perturbed_topk as ptopk
from ptopk_patch_selection import score_function

B, D, K = 2, 10, 3


def _cosine(a, b):
  a, b = np.ravel(a), np.ravel(b)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _assert_matches(grad, reference, min_cosine, norm_tolerance=0.05):
  """Same direction (cosine) and same size (norm ratio within tolerance):
  a backward pass off by a constant factor fails the second."""
  assert _cosine(grad, reference) >= min_cosine
  ratio = np.linalg.norm(np.ravel(grad)) / np.linalg.norm(np.ravel(reference))
  assert abs(ratio - 1) <= norm_tolerance, f"norm ratio {ratio:.3f}"


@pytest.fixture(name="scores")
def _scores():
  return jax.random.normal(jax.random.key(0), (B, D))


@pytest.fixture(name="cotangent")
def _cotangent():
  return jax.random.normal(jax.random.key(1), (B, K, D))


def _objective(cotangent, num_samples, sigma=0.5, **kwargs):
  """E[<G, Y>] estimated with a fixed key (common random numbers)."""
  def objective(scores):
    y = ptopk.perturbed_topk(scores, jax.random.key(7), k=K,
                             num_samples=num_samples, sigma=sigma, **kwargs)
    return jnp.sum(cotangent * y)
  return jax.jit(objective)


def _finite_differences(fn, x, step):
  """Central differences of fn at x, all coordinates in one vmapped call."""
  deltas = step * jnp.eye(x.size).reshape((x.size,) + x.shape)
  values = jax.jit(jax.vmap(fn))(jnp.concatenate([x + deltas, x - deltas]))
  return np.asarray(values[:x.size] - values[x.size:]).reshape(x.shape) / (
      2 * step)


def test_topk_indices_are_sorted_by_position():
  scores = jnp.array([[0.1, 5.0, 3.0, -1.0, 4.0], [9.0, 0.0, 1.0, 2.0, 8.0]])
  np.testing.assert_array_equal(ptopk.topk_indices(scores, 3),
                                [[1, 2, 4], [0, 3, 4]])
  assert ptopk.topk_indices(scores, 3).dtype == jnp.int32


def test_indicators_from_indices_are_one_hot():
  y = ptopk.indicators_from_indices(jnp.array([[0, 3]]), 4)
  np.testing.assert_array_equal(y, [[[1, 0, 0, 0], [0, 0, 0, 1]]])


def test_forward_rows_sum_to_one_with_slots_in_position_order(scores):
  y = ptopk.perturbed_topk(scores, jax.random.key(2), k=K, num_samples=200,
                           sigma=0.3)
  assert y.shape == (B, K, D)
  np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-6)
  # Expected position of each slot increases with the slot index.
  positions = (y * jnp.arange(D)).sum(-1)
  assert np.all(np.diff(positions, axis=-1) > 0)


def test_sigma_zero_is_the_hard_topk_with_zero_gradient(scores, cotangent):
  hard = ptopk.indicators_from_indices(ptopk.topk_indices(scores, K), D)
  y = ptopk.perturbed_topk(scores, jax.random.key(2), k=K, num_samples=20,
                           sigma=0.0)
  np.testing.assert_array_equal(y, hard)
  grad = jax.grad(_objective(cotangent, 20, sigma=0.0))(scores)
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(grad, 0.0)


def test_converges_to_hard_topk_as_sigma_shrinks(scores):
  hard = ptopk.indicators_from_indices(ptopk.topk_indices(scores, K), D)
  errors = [
      float(jnp.abs(ptopk.perturbed_topk(scores, jax.random.key(3), k=K,
                                         num_samples=500, sigma=s) - hard
                    ).max()) for s in (1.0, 0.1, 1e-4)
  ]
  assert errors[0] > errors[1] > errors[2]
  assert errors[2] == 0.0


def test_sigma_is_traced_and_gets_no_gradient(scores, cotangent):
  def objective(sigma):
    y = ptopk.perturbed_topk(scores, jax.random.key(2), k=K, num_samples=50,
                             sigma=sigma)
    return jnp.sum(cotangent * y)
  assert float(jax.jit(jax.grad(objective))(0.3)) == 0.0


@pytest.mark.parametrize("variance_reduction,shared_noise", [
    ("none", False), ("leave_one_out", False), ("antithetic", False),
    ("conditional", False), ("none", True), ("conditional", True)])
def test_exact_gradient_matches_finite_differences(scores, cotangent,
                                                   variance_reduction,
                                                   shared_noise):
  objective = _objective(cotangent, 40_000,
                         variance_reduction=variance_reduction,
                         shared_noise=shared_noise)
  grad = jax.grad(objective)(scores)
  reference = _finite_differences(objective, scores, step=0.05)
  _assert_matches(grad, reference, 0.99)


@pytest.mark.parametrize("variance_reduction", ["none", "conditional"])
def test_shared_noise_gives_equal_examples_equal_outputs_and_gradients(
    variance_reduction):
  """Two equal rows: with one noise draw for the batch their outputs and
  gradients are equal; with a draw per example they differ."""
  row = jax.random.normal(jax.random.key(4), (1, D))
  scores = jnp.concatenate([row, row])
  cotangent = jnp.broadcast_to(
      jax.random.normal(jax.random.key(5), (1, K, D)), (2, K, D))

  def output_and_gradient(shared_noise):
    objective = _objective(cotangent, 64, variance_reduction=variance_reduction,
                           shared_noise=shared_noise)
    y = ptopk.perturbed_topk(scores, jax.random.key(7), k=K, num_samples=64,
                             sigma=0.5, variance_reduction=variance_reduction,
                             shared_noise=shared_noise)
    return np.asarray(y), np.asarray(jax.grad(objective)(scores))

  for value in output_and_gradient(shared_noise=True):
    np.testing.assert_array_equal(value[0], value[1])
  for value in output_and_gradient(shared_noise=False):
    assert np.abs(value[0] - value[1]).max() > 0.01


def _selection_losses(weights, sigma):
  """Losses (B, m) of the hard top-k of scores + sigma * noise (B, m, D)."""
  def losses(scores, noise):
    indices = ptopk.topk_indices(scores[:, None] + sigma * noise, K)
    return jnp.square(weights[indices].sum(-1))  # nonlinear in the set
  return losses


@pytest.mark.parametrize("noise_kind", ["normal", "gumbel"])
def test_expected_loss_surrogate_matches_finite_differences(scores,
                                                            noise_kind):
  """Its gradient is d E[L(Y(theta + sigma Z))] / d theta, L nonlinear."""
  sigma = 0.5
  losses = _selection_losses(
      jax.random.normal(jax.random.key(3), (D,)), sigma)
  sample = jax.random.gumbel if noise_kind == "gumbel" else jax.random.normal
  noise = sample(jax.random.key(4), (B, 40_000, D))

  def surrogate(scores):
    return score_function.expected_loss_surrogate(
        scores, noise, losses(scores, noise), sigma, noise_kind)

  value, grad = jax.jit(jax.value_and_grad(surrogate))(scores)
  reference = _finite_differences(
      lambda s: losses(s, noise).mean(), scores, step=0.05)
  assert float(value) == 0.0
  _assert_matches(grad, reference, 0.98)
  np.testing.assert_allclose(grad, reference,
                             atol=0.1 * np.abs(reference).max())


def test_expected_loss_surrogate_is_zero_at_sigma_zero(scores):
  losses = _selection_losses(jnp.arange(D, dtype=jnp.float32), 0.0)
  noise = jax.random.normal(jax.random.key(4), (B, 4, D))
  grad = jax.grad(lambda s: score_function.expected_loss_surrogate(
      s, noise, losses(s, noise), 0.0))(scores)
  np.testing.assert_array_equal(grad, np.zeros_like(grad))


def test_diagonal_gradient_does_not_match_finite_differences(scores,
                                                             cotangent):
  """The released estimator drops the cross terms: the documented bug."""
  grad = jax.grad(_objective(cotangent, 40_000, gradient="diagonal"))(scores)
  reference = _finite_differences(_objective(cotangent, 40_000), scores, 0.05)
  assert _cosine(grad, reference) < 0.9


@pytest.mark.parametrize("noise_name", ["normal", "gumbel"])
@pytest.mark.parametrize("variance_reduction", ["none", "conditional"])
def test_exact_gradient_matches_optax_perturbations(scores, cotangent,
                                                    noise_name,
                                                    variance_reduction):
  noise = {"normal": optax.perturbations.Normal(),
           "gumbel": optax.perturbations.Gumbel()}[noise_name]

  def hard(x):
    return ptopk.indicators_from_indices(ptopk.topk_indices(x, K), D)

  perturbed = optax.perturbations.make_perturbed_fun(
      hard, num_samples=40_000, sigma=0.5, noise=noise)
  ours = jax.grad(_objective(cotangent, 40_000, noise=noise_name,
                             variance_reduction=variance_reduction))(scores)
  for b in range(B):
    expected = jax.grad(
        lambda x, b=b: jnp.sum(cotangent[b] * perturbed(jax.random.key(9), x))
    )(scores[b])
    _assert_matches(ours[b], expected, 0.99)


def test_row_constant_cotangent_gives_zero_gradient(scores):
  """Rows of Y sum to 1, so a row-constant G carries no information."""
  num_samples, sigma = 2000, 0.5
  row_constant = jnp.broadcast_to(jnp.array([1.0, -2.0, 3.0])[None, :, None],
                                  (B, K, D))
  # Per coordinate: sum(c) * mean(Z) / sigma, std = |sum(c)| / (sigma sqrt(S)).
  noise_bound = 5 * 2.0 / (sigma * np.sqrt(num_samples))
  exact = jax.grad(_objective(row_constant, num_samples, sigma))(scores)
  assert np.abs(exact).max() < noise_bound
  for variance_reduction in ("leave_one_out", "conditional"):
    reduced = jax.grad(_objective(row_constant, num_samples, sigma,
                                  variance_reduction=variance_reduction))(
                                      scores)
    np.testing.assert_allclose(reduced, 0.0, atol=1e-4)
  diagonal = jax.grad(_objective(row_constant, num_samples, sigma,
                                 gradient="diagonal"))(scores)
  assert np.abs(diagonal).max() > 3 * noise_bound


def test_variance_reduction_lowers_gradient_variance(scores, cotangent):
  reference = jax.grad(_objective(cotangent, 100_000))(scores)

  def spread(variance_reduction):
    @jax.jit
    def gradient(key):
      return jax.grad(lambda s: jnp.sum(cotangent * ptopk.perturbed_topk(
          s, key, k=K, num_samples=100, sigma=0.5,
          variance_reduction=variance_reduction)))(scores)
    grads = jax.vmap(gradient)(jax.random.split(jax.random.key(11), 64))
    assert _cosine(grads.mean(0), reference) > 0.95  # still unbiased
    return float(((grads - reference) ** 2).mean())

  plain = spread("none")
  assert spread("leave_one_out") < 0.8 * plain
  assert spread("antithetic") < plain
  assert spread("conditional") < 0.1 * plain


def test_jit_vmap_and_grad_compose(scores, cotangent):
  keys = jax.random.split(jax.random.key(4), 3)

  def objective(s, key):
    y = ptopk.perturbed_topk(s, key, k=K, num_samples=64, sigma=0.5)
    return jnp.sum(cotangent * y)

  batched = jax.jit(jax.vmap(jax.grad(objective), in_axes=(None, 0)))(scores,
                                                                      keys)
  gradient = jax.jit(jax.grad(objective))
  looped = jnp.stack([gradient(scores, key) for key in keys])
  np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-5)


def test_batch_sharded_on_four_devices_matches_one_device():
  devices = jax.devices()
  assert len(devices) >= 4, "tests/conftest.py forces 4 CPU devices"
  scores = jax.random.normal(jax.random.key(5), (8, 40))
  cotangent = jax.random.normal(jax.random.key(6), (8, 4, 40))

  def value_and_grad(s):
    def objective(s):
      y = ptopk.perturbed_topk(s, jax.random.key(8), k=4, num_samples=100,
                               sigma=0.2)
      return jnp.sum(cotangent * y), y
    return jax.value_and_grad(objective, has_aux=True)(s)

  single = jax.jit(value_and_grad)(scores)
  mesh = Mesh(np.array(devices[:4]), ("batch",))
  sharded_scores = jax.device_put(scores,
                                  NamedSharding(mesh, PartitionSpec("batch")))
  sharded = jax.jit(value_and_grad)(sharded_scores)
  assert len(sharded[1].sharding.device_set) == 4
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _temp_bytes(b, d, k, num_samples):
  scores = jnp.zeros((b, d))
  cotangent = jnp.ones((b, k, d))

  def fwd_bwd(s):
    return jax.grad(lambda s: jnp.sum(cotangent * ptopk.perturbed_topk(
        s, jax.random.key(0), k=k, num_samples=num_samples, sigma=0.1)))(s)

  compiled = jax.jit(fwd_bwd).lower(scores).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_backward_memory_grows_like_samples_times_k_plus_d():
  b, d, num_samples = 4, 1000, 400
  small, large = _temp_bytes(b, d, 2, num_samples), _temp_bytes(b, d, 8,
                                                                num_samples)
  one_hots = b * num_samples * 8 * d * 4  # the released (S, k, d) residual
  assert large < one_hots / 20
  # S * k * d would grow 4x from k=2 to k=8; S * (k + d) barely moves.
  assert large / small < 1.5


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=11), "k=11"),
    (dict(gradient="full"), "gradient="),
    (dict(noise="uniform"), "noise="),
    (dict(variance_reduction="antithetic", noise="gumbel"), "antithetic"),
    (dict(variance_reduction="antithetic", num_samples=7), "even"),
    (dict(sigma=-0.1), "sigma=-0.1"),
    (dict(k=10, variance_reduction="conditional"), "k=10 < d=10"),
    (dict(chunk_size=0), "chunk_size=0 must be at least 1"),
    (dict(num_samples=499, chunk_size=16),
     "num_samples=499 has no divisor between 8 and chunk_size=16.*e.g. 496"),
])
def test_invalid_arguments_raise(scores, kwargs, message):
  arguments = dict(k=K, num_samples=8, sigma=0.1) | kwargs
  with pytest.raises(ValueError, match=message):
    ptopk.perturbed_topk(scores, jax.random.key(0), **arguments)


@pytest.mark.parametrize("num_samples, chunk_size, antithetic, used", [
    (500, 16, False, 10), (100, 16, True, 10), (7, 16, False, 7),
    (40_000, 16, False, 16), (30, 16, True, 10), (499, 16, False, None),
    (18, 16, True, None)])
def test_chunks_are_the_largest_divisor_not_below_half_the_request(
    num_samples, chunk_size, antithetic, used):
  assert ptopk.chunk_size_used(num_samples, chunk_size, antithetic) == used


def test_a_negative_traced_sigma_is_the_hard_topk(scores, cotangent):
  def objective(scores, sigma):
    y = ptopk.perturbed_topk(scores, jax.random.key(0), k=K, num_samples=8,
                             sigma=sigma)
    return jnp.sum(cotangent * y), y
  (_, y), grad = jax.jit(jax.value_and_grad(objective, has_aux=True))(
      scores, jnp.float32(-0.3))
  hard = ptopk.indicators_from_indices(ptopk.topk_indices(scores, K), D)
  np.testing.assert_array_equal(y, hard)
  np.testing.assert_array_equal(grad, np.zeros_like(grad))


@pytest.mark.parametrize("noise_kind", ["normal", "gumbel"])
def test_sample_perturbed_indices_follows_the_noise_kind(noise_kind):
  """Top-1 under Gumbel noise is softmax(theta / sigma) (Gumbel-max)."""
  theta, sigma, m = jnp.array([[0.0, 1.0, 2.0]]), 1.0, 40_000
  indices, noise = score_function.sample_perturbed_indices(
      jax.random.key(0), theta, 1, sigma, noise_kind, num_samples=m)
  assert indices.shape == (1, m, 1) and noise.shape == (1, m, 3)
  np.testing.assert_array_equal(
      indices, ptopk.topk_indices(theta[:, None] + sigma * noise, 1))
  frequencies = np.bincount(np.ravel(indices), minlength=3) / m
  gumbel_max = np.asarray(jax.nn.softmax(theta[0] / sigma))
  if noise_kind == "gumbel":
    np.testing.assert_allclose(frequencies, gumbel_max, atol=0.01)
  else:  # Normal noise concentrates more on the best entry.
    assert frequencies[2] > gumbel_max[2] + 0.03
  single, _ = score_function.sample_perturbed_indices(
      jax.random.key(0), jnp.zeros((4, 10)), 3, sigma, noise_kind)
  assert single.shape == (4, 3)
  assert np.all(np.diff(np.asarray(single), axis=-1) > 0)  # sorted, distinct
