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


def _one_step(**overrides):
  """One update of a tiny tree {"scorer": {"w"}, "head": {"w"}} for g = 1."""
  config = default.get_config()
  config.update(learning_rate=0.1, weight_decay=0.01, gradient_clip=0.0,
                schedule="piecewise", warmup_ratio=0.0, num_train_steps=4,
                **overrides)
  optimizer = optimizers.create_optimizer(
      config, optimizers.create_learning_rate_fn(config))
  params = {"scorer": {"w": jnp.full((2,), 3.0)},
            "head": {"w": jnp.full((2,), 3.0)}}
  updates, _ = optimizer.update(
      {"scorer": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}},
      optimizer.init(params), params)
  return {name: np.asarray(tree["w"]) for name, tree in updates.items()}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_lr_scales_multiply_the_update_of_matching_parameters(optimizer):
  plain = _one_step(optimizer=optimizer)
  scaled = _one_step(optimizer=optimizer,
                     lr_scales=(("^scorer/", 0.25), ("w$", 3.0)))
  assert np.all(plain["scorer"] != 0)
  np.testing.assert_allclose(scaled["scorer"], 0.25 * plain["scorer"],
                             rtol=1e-6)  # the first matching pair applies
  np.testing.assert_allclose(scaled["head"], 3.0 * plain["head"], rtol=1e-6)
  frozen = _one_step(optimizer=optimizer, frozen_params="^head/",
                     lr_scales=(("w$", 3.0),))
  np.testing.assert_array_equal(frozen["head"], 0.0)  # frozen wins
  np.testing.assert_allclose(frozen["scorer"], 3.0 * plain["scorer"],
                             rtol=1e-6)
  assert default.get_config().lr_scales == ()


@pytest.mark.parametrize("scales", [(("(scorer", 0.1),), (("scorer", -1.0),),
                                    (("scorer",),)])
def test_bad_lr_scales_name_the_field(scales):
  with pytest.raises(ValueError, match="lr_scales entry"):
    _one_step(optimizer="sgd", lr_scales=scales)
