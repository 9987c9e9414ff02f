# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""A stride-2 convolution whose input gradient is 4 stride-1 convolutions.

XLA:CPU computes the input gradient of a strided convolution as a
convolution over the cotangent dilated by the stride, which is slow: for the
ResNet stem on the embedded default's patches it is about a third of a whole
training step (benchmarks/step_cost.py). The same gradient splits by the
parity of the input pixel into 4 stride-1 convolutions of the undilated
cotangent with sub-kernels (`input_gradient_by_phases`), 3-4x faster there.

`conv_stride2(x, kernel, padding)` is `jax.lax.conv_general_dilated` with
stride 2 and symmetric zero padding, as a `jax.custom_vjp` with that input
gradient (the kernel gradient is XLA's). `PhaseGradientConv` is the Flax
layer: the parameter is `kernel`, (K, K, c_in, features), initialised like
`nn.Conv(use_bias=False)`, so checkpoints of either load into the other.
Outputs are identical to XLA's; gradients equal up to float rounding
(summation order).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
  return jax.lax.conv_general_dilated(
      x, kernel, (2, 2), ((padding, padding),) * 2,
      dimension_numbers=_DIMENSIONS)


def input_gradient_by_phases(cotangent: jax.Array, kernel: jax.Array,
                             padding: int) -> jax.Array:
  """The input gradient of a stride-2 convolution, by phases.

  For y[o] = sum_k x[2o + k - P] w[k] (per axis, P = `padding`), the input
  pixel i = 2m + p receives dy[o] w[k] only from taps k = q + 2t with
  q = (p + P) mod 2, at o = m + c - t, c = (p + P - q) / 2. So each of the 4
  parities (p_y, p_x) of the input is a stride-1 correlation of dy with the
  flipped sub-kernel w[q::2], padded (T - 1 - c, c) for its T taps; no
  dilated input, which XLA's CPU convolution is slow at.

  Args:
    cotangent: (n, h/2, w/2, c_out).
    kernel: (K, K, c_in, c_out), HWIO.
    padding: P, the forward convolution's zero padding on every side.

  Returns:
    (n, h, w, c_in) for even h and w (the forward input's shape).
  """
  transposed = jnp.swapaxes(kernel, 2, 3)  # maps c_out back to c_in

  def taps(parity):  # (first tap q, padding) of one axis
    q = (parity + padding) % 2
    num_taps = -(-(kernel.shape[0] - q) // 2)
    offset = (parity + padding - q) // 2
    return q, (num_taps - 1 - offset, offset)

  rows = []
  for parity_y in (0, 1):
    q_y, pad_y = taps(parity_y)
    columns = []
    for parity_x in (0, 1):
      q_x, pad_x = taps(parity_x)
      columns.append(jax.lax.conv_general_dilated(
          cotangent, transposed[q_y::2, q_x::2][::-1, ::-1], (1, 1),
          (pad_y, pad_x), dimension_numbers=_DIMENSIONS))
    rows.append(jnp.stack(columns, axis=3))  # (n, h/2, w/2, p_x, c_in)
  phases = jnp.stack(rows, axis=2)  # (n, h/2, p_y, w/2, p_x, c_in)
  n, half_h, _, half_w, _, channels = phases.shape
  return phases.reshape(n, 2 * half_h, 2 * half_w, channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_stride2(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
  """Stride-2 convolution of x (n, h, w, c_in), even h and w, with `kernel`
  (K, K, c_in, c_out) and zero padding `padding`; (n, h', w', c_out)."""
  return _conv(x, kernel, padding)


def _forward(x, kernel, padding):
  return _conv(x, kernel, padding), (x, kernel)


def _backward(padding, residuals, cotangent):
  x, kernel = residuals
  _, kernel_vjp = jax.vjp(lambda w: _conv(x, w, padding), kernel)
  (kernel_gradient,) = kernel_vjp(cotangent)
  input_gradient = input_gradient_by_phases(cotangent, kernel, padding)
  if input_gradient.shape != x.shape:  # K - 2P != 1: phases miss a border
    raise ValueError(f"conv_stride2: a {kernel.shape[0]}x{kernel.shape[1]} "
                     f"kernel with padding {padding} on {x.shape} has no "
                     "phase gradient of the input's shape.")
  return input_gradient.astype(x.dtype), kernel_gradient


conv_stride2.defvjp(_forward, _backward)


class PhaseGradientConv(nn.Module):
  """nn.Conv(features, (K, K), 2, padding=P, use_bias=False) with the input
  gradient of `conv_stride2`. Needs even input sides."""
  features: int
  kernel_size: int
  padding: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.shape[1] % 2 or x.shape[2] % 2:
      raise ValueError(f"PhaseGradientConv needs even sides, got "
                       f"{x.shape[1]}x{x.shape[2]}.")
    kernel = self.param(
        "kernel", nn.initializers.lecun_normal(),
        (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
    return conv_stride2(x, kernel.astype(x.dtype), self.padding)
