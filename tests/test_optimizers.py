# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of the optimiser options."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from ptopk_patch_selection import optimizers


def _sgd_updates(order, steps=3):
  """Updates of SGD (lr 1, momentum 0.9, warmup 0 -> 0.5 -> 1) for g = 1."""
  config = default.get_config()
  config.update(optimizer="sgd", learning_rate=1.0, momentum=0.9,
                weight_decay=0.0, gradient_clip=0.0, schedule="piecewise",
                warmup_ratio=0.5, num_train_steps=4, sgd_learning_rate=order)
  optimizer = optimizers.create_optimizer(
      config, optimizers.create_learning_rate_fn(config))
  params = {"w": jnp.zeros(())}
  state = optimizer.init(params)
  updates = []
  for _ in range(steps):
    update, state = optimizer.update({"w": jnp.ones(())}, state, params)
    updates.append(float(update["w"]))
  return updates


def test_sgd_learning_rate_before_or_after_the_momentum_trace():
  """lr(t) = 0, 0.5, 1. After (optax.sgd): -lr(t) * (1, 1.9, 2.71).
  Before (released): -(0, 0.5, 0.5 * 0.9 + 1)."""
  np.testing.assert_allclose(_sgd_updates("after_momentum"),
                             [0.0, -0.95, -2.71], rtol=1e-6)
  np.testing.assert_allclose(_sgd_updates("before_momentum"),
                             [0.0, -0.5, -1.45], rtol=1e-6)
  assert default.get_config().sgd_learning_rate == "after_momentum"
  with pytest.raises(ValueError, match="sgd_learning_rate='first'"):
    _sgd_updates("first")
