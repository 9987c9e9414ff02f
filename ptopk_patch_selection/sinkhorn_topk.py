# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Optimal-transport (Sinkhorn) Top-K of Xie et al. 2020, the paper's appendix.

The d scores x_i (mass 1/d each) are transported onto k + 1 targets
y_0 < y_1 < ... < y_k with masses ((d - k)/d, 1/d, ..., 1/d) under the cost
C_ij = (x_i - y_j)^2 and entropic regularisation epsilon:

  P = argmin_{P 1 = a, P^T 1 = b} <C, P> - epsilon H(P),
  P_ij = exp((f_i + g_j - C_ij) / epsilon),

computed with a fixed number of log-domain Sinkhorn iterations. In one
dimension the transport is monotone, so target 0 receives the d - k smallest
scores and targets 1..k the top k in ascending order of value. The output is
d * P[:, 1:] transposed: (k, d), each row a distribution over positions, slot r
holding the (r+1)-th smallest of the top k (slots are sorted by value, not by
position as in the perturbed Top-K). The targets are spread evenly over [0, 1]
(y_j = j / k), so scores are expected in [0, 1], as the normalised scorer
outputs are.

Gradient: implicit differentiation of the optimality conditions rather than
unrolling the iterations. Unrolling 2000 iterations would keep every iterate
(O(iterations * d * k) memory per example); the implicit form needs only the
final plan and a k x k linear solve, O(d * k) memory, and is exact at
convergence. With Q = G o P (G the cotangent of P), the potentials' adjoint
(u, v) solves
  a o u + P v = Q 1,   P^T u + b o v = Q^T 1    (gauge v_0 = 0),
and dL/dC = P o (u_i + v_j - G_ij) / epsilon.
"""

import functools

import jax
import jax.numpy as jnp


def _sinkhorn_plan(cost, log_a, log_b, epsilon, num_iterations):
  """Entropic OT plan (n, m) for cost (n, m) and log-marginals, log domain.

  Epsilon scaling: the regularisation starts at the cost's scale and decays
  geometrically to `epsilon` over the first half of the iterations, which
  converges far faster at small epsilon than iterating at epsilon throughout;
  the second half runs at `epsilon`, so the fixed point is the same.
  """
  start = jnp.maximum(jnp.max(cost), epsilon)
  decay = (epsilon / start) ** (1.0 / max(num_iterations // 2, 1))

  def iteration(i, potentials):
    f, g = potentials
    eps = jnp.maximum(start * decay ** i, epsilon)
    f = eps * log_a - eps * jax.nn.logsumexp((g[None, :] - cost) / eps, 1)
    g = eps * log_b - eps * jax.nn.logsumexp((f[:, None] - cost) / eps, 0)
    return f, g

  n, m = cost.shape
  f, g = jax.lax.fori_loop(0, num_iterations, iteration,
                           (jnp.zeros(n, cost.dtype), jnp.zeros(m, cost.dtype)))
  return jnp.exp((f[:, None] + g[None, :] - cost) / epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _plan(cost, log_a, log_b, epsilon, num_iterations):
  return _sinkhorn_plan(cost, log_a, log_b, epsilon, num_iterations)


def _plan_fwd(cost, log_a, log_b, epsilon, num_iterations):
  plan = _sinkhorn_plan(cost, log_a, log_b, epsilon, num_iterations)
  return plan, plan


def _plan_bwd(epsilon, num_iterations, plan, cotangent):
  """Implicit-function VJP of the plan with respect to the cost."""
  del num_iterations
  a = plan.sum(1)  # the marginals the plan actually has
  b = plan.sum(0)
  weighted = cotangent * plan
  row, col = weighted.sum(1), weighted.sum(0)
  # Eliminate u = (Q 1 - P v) / a, fix v_0 = 0, solve the k x k system for v.
  rest = plan[:, 1:]
  system = jnp.diag(b[1:]) - rest.T @ (rest / a[:, None])
  rhs = col[1:] - rest.T @ (row / a)
  v = jnp.concatenate([jnp.zeros(1, plan.dtype), jnp.linalg.solve(system, rhs)])
  u = (row - plan @ v) / a
  grad_cost = plan * (u[:, None] + v[None, :] - cotangent) / epsilon
  return grad_cost, None, None


_plan.defvjp(_plan_fwd, _plan_bwd)


def sinkhorn_topk(scores: jax.Array,
                  *,
                  k: int,
                  epsilon: float = 1e-4,
                  num_iterations: int = 2000) -> jax.Array:
  """Soft top-k indicators by entropic optimal transport.

  Args:
    scores: (b, d) scores, expected in [0, 1].
    k: number of patches to select, 1 <= k < d.
    epsilon: entropic regularisation; smaller is closer to the hard top-k.
    num_iterations: Sinkhorn iterations (fixed, so the cost is predictable).

  Returns:
    (b, k, d) indicators; each row sums to 1; slot r holds the (r+1)-th
    smallest of the k largest scores.
  """
  if scores.ndim != 2:
    raise ValueError(f"scores must have shape (batch, d), got {scores.shape}.")
  d = scores.shape[-1]
  if not 1 <= k < d:
    raise ValueError(f"k={k} must be between 1 and d - 1 = {d - 1}.")
  if epsilon <= 0:
    raise ValueError(f"epsilon={epsilon} must be > 0.")
  dtype = scores.dtype
  compute_dtype = jnp.promote_types(dtype, jnp.float32)
  scores = scores.astype(compute_dtype)
  targets = jnp.arange(k + 1, dtype=compute_dtype) / k
  log_a = jnp.full((d,), -jnp.log(d), compute_dtype)
  log_b = jnp.log(jnp.concatenate([jnp.array([d - k], compute_dtype),
                                   jnp.ones(k, compute_dtype)]) / d)

  def one_example(x):
    cost = (x[:, None] - targets[None, :]) ** 2
    plan = _plan(cost, log_a, log_b, epsilon, num_iterations)
    return d * plan[:, 1:].T

  return jax.vmap(one_example)(scores).astype(dtype)
