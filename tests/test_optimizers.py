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


def _learning_rates(steps, **overrides):
  config = default.get_config()
  config.update(learning_rate=0.2, **overrides)
  learning_rate_fn = optimizers.create_learning_rate_fn(config)
  return [float(learning_rate_fn(step)) for step in steps]


def test_cosine_schedule_warms_up_to_the_peak_then_decays_to_zero():
  """100 steps, 10 of warmup: linear 0 -> 0.2 over steps 0-10, then half a
  cosine over the 90 others (half way at step 55)."""
  np.testing.assert_allclose(
      _learning_rates([0, 5, 10, 55, 100], schedule="cosine",
                      num_train_steps=100, warmup_ratio=0.1),
      [0.0, 0.1, 0.2, 0.1, 0.0], atol=1e-7)
  # No warmup: the peak at step 0.
  np.testing.assert_allclose(
      _learning_rates([0, 50], schedule="cosine", num_train_steps=100,
                      warmup_ratio=0.0), [0.2, 0.1], atol=1e-7)


def test_piecewise_schedule_decays_exactly_at_the_given_steps():
  np.testing.assert_allclose(
      _learning_rates(range(8), schedule="piecewise", num_train_steps=8,
                      warmup_ratio=0.0, decay_at_steps=(3, 6),
                      decay_factor=0.5),
      [0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05], rtol=1e-6)
  # A warmup over 2 of 8 steps scales the same steps by 0, 1/2, then 1.
  np.testing.assert_allclose(
      _learning_rates(range(5), schedule="piecewise", num_train_steps=8,
                      warmup_ratio=0.25, decay_at_steps=(3,),
                      decay_factor=0.5),
      [0.0, 0.1, 0.2, 0.1, 0.1], rtol=1e-6)


def _after_one_step(params, gradients, **overrides):
  """params after one step at a constant rate of 0.5; by default of plain
  SGD (no momentum, no weight decay, no clipping)."""
  config = default.get_config()
  config.update(optimizer="sgd", learning_rate=0.5, momentum=0.0,
                weight_decay=0.0, gradient_clip=0.0, schedule="piecewise",
                warmup_ratio=0.0, num_train_steps=4)
  config.update(overrides)
  optimizer = optimizers.create_optimizer(
      config, optimizers.create_learning_rate_fn(config))
  params = {"w": jnp.asarray(params, jnp.float32)}
  updates, _ = optimizer.update(
      {"w": jnp.asarray(gradients, jnp.float32)}, optimizer.init(params),
      params)
  return np.asarray(params["w"] + updates["w"])


def test_gradient_clip_clips_each_element_to_its_value():
  """clip 0.1: gradients 10, -10, 0.03 act as 0.1, -0.1, 0.03 (lr 0.5)."""
  np.testing.assert_allclose(
      _after_one_step([1.0, 1.0, 1.0], [10.0, -10.0, 0.03], gradient_clip=0.1),
      [1.0 - 0.05, 1.0 + 0.05, 1.0 - 0.015], rtol=1e-6)
  np.testing.assert_allclose(  # 0 disables the clipping
      _after_one_step([1.0], [10.0], gradient_clip=0.0), [1.0 - 5.0],
      rtol=1e-6)


def test_sgd_weight_decay_moves_parameters_toward_zero():
  """L2 decay 0.1 with a zero gradient: w -= 0.5 * 0.1 * w, either sign."""
  np.testing.assert_allclose(
      _after_one_step([2.0, -2.0], [0.0, 0.0], weight_decay=0.1), [1.9, -1.9],
      rtol=1e-6)
  # The decay is added after the clipping: not clipped to 0.1 itself.
  np.testing.assert_allclose(
      _after_one_step([20.0], [0.0], weight_decay=0.1, gradient_clip=0.1), [19.0],
      rtol=1e-6)


def test_adamw_weight_decay_moves_parameters_toward_zero():
  """Decoupled and scaled by the rate: a zero gradient gives -lr * wd * w."""
  np.testing.assert_allclose(
      _after_one_step([2.0, -2.0], [0.0, 0.0], optimizer="adamw",
                weight_decay=0.1), [1.9, -1.9], rtol=1e-6)
