# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Hard perturbed selections and the score-function gradient of their loss.

`perturbed_topk` differentiates the mean indicators Y_bar; here the model
reads the clean patches of m hard selections Y(theta + sigma Z_j), and the
scorer's gradient comes from their losses L_j (`expected_loss_surrogate`).
"""

import jax
import jax.numpy as jnp

from ptopk_patch_selection import perturbed_topk as ptopk


def sample_perturbed_indices(key: jax.Array, scores: jax.Array, k: int,
                             sigma: jax.Array | float, kind: str,
                             num_samples: int | None = None
                             ) -> tuple[jax.Array, jax.Array]:
  """Hard perturbed selections: topk_indices(theta + sigma Z) and Z.

  Args:
    key: PRNG key of the noise.
    scores: (b, d) scores theta (no gradient flows through the indices).
    k: patches per selection.
    sigma: noise scale.
    kind: "normal" or "gumbel", the distribution of Z.
    num_samples: None for one selection per example, or m.

  Returns:
    indices (b, k) or (b, m, k), sorted, and the noise (b, d) or (b, m, d).
  """
  scores = jax.lax.stop_gradient(scores)
  if num_samples is not None:
    b, d = scores.shape
    scores = jnp.broadcast_to(scores[:, None], (b, num_samples, d))
  noise = ptopk.sample_noise(key, scores.shape, kind)
  return ptopk.topk_indices(scores + sigma * noise, k), noise


def expected_loss_surrogate(scores: jax.Array, noise: jax.Array,
                            losses: jax.Array, sigma: float | jax.Array,
                            noise_kind: str = "normal") -> jax.Array:
  """A zero-valued scalar whose gradient in `scores` is that of E[loss].

  For m >= 2 perturbed selections per example, Y(theta + sigma Z_j), whose
  downstream losses L_j were computed on their hard patches, the gradient of
  the expected loss E_Z[L(Y(theta + sigma Z))] is estimated without
  differentiating through the downstream network (Berthet et al. 2020,
  Prop. 3.1, applied to the loss instead of the indicators):

    g = 1 / (m sigma) sum_j (L_j - mean_{l != j} L_l) nu'(Z_j)      (d,)

  The leave-one-out baseline keeps g unbiased and removes the loss's scale.
  This sees the effect of including a patch on the loss itself, where the
  straight-through and soft-patch gradients only see a first-order expansion
  in pixel space around the patches in use.

  Args:
    scores: (b, d) normalised scores theta (the gradient flows into them).
    noise: (b, m, d) the Z_j that made the m selections of each example.
    losses: (b, m) their per-example losses (no gradient flows through them).
    sigma: the noise scale used; sigma = 0 gives a zero gradient.
    noise_kind: "normal" or "gumbel", the distribution of `noise`.

  Returns:
    mean_b <theta_b, g_b> minus its own value: add it to the loss.
  """
  if noise.ndim != 3 or losses.shape != noise.shape[:2] or (
      scores.shape != (noise.shape[0], noise.shape[2])):
    raise ValueError(f"Expected scores (b, d), noise (b, m, d) and losses "
                     f"(b, m); got {scores.shape}, {noise.shape}, "
                     f"{losses.shape}.")
  m = losses.shape[1]
  if m < 2:
    raise ValueError(f"The leave-one-out baseline needs m >= 2 selections "
                     f"per example, got {m}.")
  losses = jax.lax.stop_gradient(losses.astype(jnp.float32))
  advantages = (losses - losses.mean(1, keepdims=True)) * (m / (m - 1))
  scale = ptopk.inverse_sigma(jnp.asarray(sigma, jnp.float32)) / m
  gradient = jnp.einsum("bm,bmd->bd", advantages,
                        ptopk.noise_score(noise, noise_kind)) * scale
  surrogate = (scores * jax.lax.stop_gradient(gradient)).sum(-1).mean()
  return surrogate - jax.lax.stop_gradient(surrogate)
