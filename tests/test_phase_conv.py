# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The stride-2 convolution and max-pool with phase input gradients, alone
and as the ResNet stem (model.stem_gradient="phases")."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from ptopk_patch_selection import errors
from ptopk_patch_selection import models
from ptopk_patch_selection.models import feature_networks
from ptopk_patch_selection.models import phase_conv


def _xla_conv(x, kernel, padding):
  return jax.lax.conv_general_dilated(
      x, kernel, (2, 2), ((padding, padding),) * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("size,padding", [(7, 3), (3, 1), (4, 1), (5, 2)])
def test_phase_gradient_equals_the_convolution_vjp(size, padding):
  rng = np.random.default_rng(size)
  x = jnp.asarray(rng.standard_normal((2, 10, 12, 3)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((size, size, 3, 5)), jnp.float32)
  y, vjp = jax.vjp(_xla_conv, x, kernel, padding)
  cotangent = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  expected_x, expected_kernel, _ = vjp(cotangent)
  np.testing.assert_allclose(
      phase_conv.input_gradient_by_phases(cotangent, kernel, padding),
      expected_x, rtol=1e-5, atol=1e-4)
  if size - 2 * padding == 1:  # the shapes conv_stride2 supports
    out, custom_vjp = jax.vjp(
        lambda x, w: phase_conv.conv_stride2(x, w, padding), x, kernel)
    np.testing.assert_array_equal(out, y)
    got_x, got_kernel = custom_vjp(cotangent)
    np.testing.assert_allclose(got_x, expected_x, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(got_kernel, expected_kernel)


@pytest.mark.parametrize("height,width", [(8, 10), (7, 9)])
def test_max_pool_gradient_equals_xla_with_ties(height, width):
  """Values on a grid of 3 (ReLU-like zeros and repeats: many ties within a
  window) and odd sides: the gradient is XLA's, up to the order in which an
  input shared by two windows sums its two cotangents."""
  rng = np.random.default_rng(height)
  x = jnp.asarray(rng.integers(-1, 2, (2, height, width, 3)), jnp.float32)
  x = jnp.maximum(x, 0.0)

  def xla_pool(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

  y, vjp = jax.vjp(xla_pool, x)
  cotangent = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  out, phase_vjp = jax.vjp(phase_conv.max_pool_3x3_stride2, x)
  np.testing.assert_array_equal(out, y)
  (expected,), (got,) = vjp(cotangent), phase_vjp(cotangent)
  assert float(jnp.abs(expected).sum()) > 0
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def _resnet(stem_gradient):
  return feature_networks.feature_network("resnet18_thin",
                                          stem_gradient=stem_gradient)


@pytest.mark.parametrize("height,width", [(48, 48), (49, 47)])
def test_phases_stem_keeps_parameters_outputs_and_gradients(height, width):
  """Same parameter tree and initial values (checkpoints load either way),
  the same features, and input gradients equal up to rounding; odd sides
  too. From 48 px on, XLA recomputes the stem's BatchNorm and ReLU for the
  backward pass with other rounding than the forward's: a max-pool gradient
  that compared them with the forward's maximum lost part of its cotangent
  (the stem BatchNorm's gradient was off by 17% to 170%)."""
  x = jax.random.uniform(jax.random.key(0), (3, height, width, 3))
  xla, phases = _resnet("xla"), _resnet("phases")
  variables = xla.init(jax.random.key(1), x, train=False)
  phase_variables = phases.init(jax.random.key(1), x, train=False)
  jax.tree.map(np.testing.assert_array_equal, variables, phase_variables)

  def loss(net):
    def fn(params, x):
      features, _ = net.apply(
          {"params": params, "batch_stats": variables["batch_stats"]}, x,
          train=True, mutable=["batch_stats"])
      return jnp.sum(jnp.sin(features))
    return jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))  # as trained

  (value, (params_grad, x_grad)) = loss(xla)(variables["params"], x)
  (phase_value, (phase_params_grad, phase_x_grad)) = loss(phases)(
      variables["params"], x)
  assert phase_value == value
  scale = float(jnp.max(jnp.abs(x_grad)))
  np.testing.assert_allclose(phase_x_grad, x_grad, atol=1e-5 * scale)
  # Rounding is relative to a leaf's largest entry (sums of thousands).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, rtol=1e-4, atol=1e-6 * float(jnp.max(jnp.abs(b)))),
               phase_params_grad, params_grad)


def test_phases_needs_a_resnet_with_the_standard_stem():
  with pytest.raises(ValueError, match="standard"):
    feature_networks.feature_network("resnet18", resnet_stem="released",
                                     stem_gradient="phases")
  config = default.get_config().model
  config.feature_network = "ats_traffic"
  config.stem_gradient = "phases"
  with pytest.raises(errors.ConfigError, match="model.stem_gradient"):
    models.create_model(config, num_classes=4, image_size=(300, 300))
  config.feature_network = "resnet18"
  config.stem_gradient = "phase"
  with pytest.raises(errors.ConfigError, match="model.stem_gradient='phase'"):
    models.create_model(config, num_classes=4, image_size=(300, 300))
