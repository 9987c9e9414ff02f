# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The ResNet stem's stride-2 layers with input gradients by phases.

XLA:CPU computes the input gradient of a strided convolution as a
convolution over the cotangent dilated by the stride, which is slow: for the
ResNet stem on the embedded default's patches it is about a third of a whole
training step (benchmarks/step_cost.py). The same gradient splits by the
parity of the input pixel into 4 stride-1 correlations of the undilated
cotangent with sub-kernels, computed as one convolution whose output
channels are the 4 parities (`input_gradient_by_phases`), 3-6x faster there.
The stem's 3x3 stride-2 max-pool has the same trouble: XLA's backward
(select-and-scatter) is several times slower than comparing each of the 9
window offsets with the output on the undilated grid and folding the
results back by parity (`max_pool_gradient_by_phases`).

`conv_stride2(x, kernel, padding)` is `jax.lax.conv_general_dilated` with
stride 2 and symmetric zero padding, as a `jax.custom_vjp` with that input
gradient (the kernel gradient is XLA's). `PhaseGradientConv` is the Flax
layer: the parameter is `kernel`, (K, K, c_in, features), initialised like
`nn.Conv(use_bias=False)`, so checkpoints of either load into the other.
`max_pool_3x3_stride2(x)` is `nn.max_pool(x, (3, 3), (2, 2), padding 1)` with
the phase gradient. Outputs are identical to XLA's; the convolution's
gradients equal up to float rounding (summation order; the max-pool's ties
go to the first maximum in raster order, as XLA's).
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


def _phase_taps(size: int, padding: int) -> list[tuple[int, int, int]]:
  """Per input parity p in (0, 1) of one axis: (first tap q, number of taps,
  padding before) of its stride-1 correlation (`input_gradient_by_phases`)."""
  taps = []
  for parity in (0, 1):
    q = (parity + padding) % 2
    num_taps = -(-(size - q) // 2)
    offset = (parity + padding - q) // 2
    taps.append((q, num_taps, num_taps - 1 - offset))
  return taps


def input_gradient_by_phases(cotangent: jax.Array, kernel: jax.Array,
                             padding: int) -> jax.Array:
  """The input gradient of a stride-2 convolution, by phases.

  For y[o] = sum_k x[2o + k - P] w[k] (per axis, P = `padding`), the input
  pixel i = 2m + p receives dy[o] w[k] only from taps k = q + 2t with
  q = (p + P) mod 2, at o = m + c - t, c = (p + P - q) / 2. So each of the 4
  parities (p_y, p_x) of the input is a stride-1 correlation of dy with the
  flipped sub-kernel w[q::2], padded (T - 1 - c, c) for its T taps; no
  dilated input, which XLA's CPU convolution is slow at. The 4 sub-kernels,
  aligned by leading and trailing zero taps, are stacked along the output
  channels, so the whole gradient is one stride-1 convolution to 4 c_in
  channels (one call with 4x the channels is 3x faster on CPUs than 4 calls
  with c_in = 3).

  Args:
    cotangent: (n, h/2, w/2, c_out).
    kernel: (K, K, c_in, c_out), HWIO.
    padding: P, the forward convolution's zero padding on every side.

  Returns:
    (n, h, w, c_in) for even h and w (the forward input's shape).
  """
  transposed = jnp.swapaxes(kernel, 2, 3)  # maps c_out back to c_in
  taps = _phase_taps(kernel.shape[0], padding)
  before = max(b for _, _, b in taps)
  length = max(before - b + t for _, t, b in taps)
  sub_kernels = []
  for q_y, taps_y, before_y in taps:
    for q_x, taps_x, before_x in taps:
      sub = transposed[q_y::2, q_x::2][::-1, ::-1]
      lead_y, lead_x = before - before_y, before - before_x
      sub_kernels.append(jnp.pad(sub, (
          (lead_y, length - lead_y - taps_y),
          (lead_x, length - lead_x - taps_x), (0, 0), (0, 0))))
  after = length - 1 - before
  phases = jax.lax.conv_general_dilated(
      cotangent, jnp.concatenate(sub_kernels, axis=-1), (1, 1),
      ((before, after),) * 2, dimension_numbers=_DIMENSIONS)
  n, half_h, half_w, _ = phases.shape
  channels = kernel.shape[2]
  phases = phases.reshape(n, half_h, half_w, 2, 2, channels)
  return phases.transpose(0, 1, 3, 2, 4, 5).reshape(
      n, 2 * half_h, 2 * half_w, channels)


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
  gradient of `conv_stride2`, for K = 2P + 1 (the stem's 7x7 with P = 3).

  An odd side gets one more zero row or column at its end: with K = 2P + 1
  the last window already reads P zeros of padding there, so the output is
  the same and the padding's gradient is cropped (by `jnp.pad`'s VJP)."""
  features: int
  kernel_size: int
  padding: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kernel_size != 2 * self.padding + 1:
      raise ValueError(f"PhaseGradientConv needs kernel_size = 2 padding + "
                       f"1, got {self.kernel_size} and {self.padding}.")
    kernel = self.param(
        "kernel", nn.initializers.lecun_normal(),
        (self.kernel_size, self.kernel_size, x.shape[-1], self.features))
    h, w = x.shape[1:3]
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    return conv_stride2(x, kernel.astype(x.dtype), self.padding)


def _max_pool(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def _offsets(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array,
                                               jax.Array]:
  """x at 2o - 1, 2o and 2o + 1 along `axis` (even length 2n): three arrays
  of length n, -inf where 2o - 1 = -1 (the pool's padding)."""
  n = x.shape[axis] // 2
  pairs = x.reshape(x.shape[:axis] + (n, 2) + x.shape[axis + 1:])
  even, odd = jnp.take(pairs, 0, axis + 1), jnp.take(pairs, 1, axis + 1)
  widths = [(0, 0)] * odd.ndim
  widths[axis] = (1, 0)
  before = jax.lax.slice_in_dim(
      jnp.pad(odd, widths, constant_values=-jnp.inf), 0, n, axis=axis)
  return before, even, odd


def _fold(parts: list[jax.Array], axis: int) -> jax.Array:
  """Inverse of `_offsets` for gradients: the contributions at 2o - 1, 2o
  and 2o + 1 (each of length n along `axis`) summed into length 2n."""
  before, even, odd = parts
  n = before.shape[axis]
  widths = [(0, 0)] * before.ndim
  widths[axis] = (0, 1)
  odd = odd + jax.lax.slice_in_dim(jnp.pad(before, widths), 1, n + 1,
                                   axis=axis)
  return jnp.stack([even, odd], axis + 1).reshape(
      before.shape[:axis] + (2 * n,) + before.shape[axis + 1:])


def max_pool_gradient_by_phases(x: jax.Array,
                                cotangent: jax.Array) -> jax.Array:
  """The input gradient of the 3x3 stride-2 max-pool with padding 1.

  Output o reads inputs 2o - 1, 2o, 2o + 1 per axis; the 9 offsets are
  compared with their maximum in raster order and the first that equals it
  takes dy[o] (XLA's tie rule). Offsets 2o and 2o + 1 land on the even and odd
  inputs of o, offset 2o - 1 on the odd input of o - 1, so every mask lives on
  the (h/2, w/2) grid and no scatter is needed.

  The maximum is taken here, from the same x as the comparisons, not passed
  in from the forward pass: XLA may recompute x for the backward pass (a
  BatchNorm and ReLU before the pool, say) with different rounding, and a
  forward maximum that no recomputed offset equals would drop its gradient.

  Args:
    x: (n, h, w, c) with even h and w.
    cotangent: the cotangent of the pooled (n, h/2, w/2, c).

  Returns:
    (n, h, w, c).
  """
  offsets = [value for row in _offsets(x, 1) for value in _offsets(row, 2)]
  pooled = functools.reduce(jnp.maximum, offsets)
  taken = jnp.zeros(pooled.shape, bool)
  rows = []
  for row_offsets in (offsets[0:3], offsets[3:6], offsets[6:9]):
    columns = []
    for value in row_offsets:
      first = (value == pooled) & ~taken
      taken = taken | first
      columns.append(jnp.where(first, cotangent, 0.0))
    rows.append(_fold(columns, 2))
  return _fold(rows, 1)


@jax.custom_vjp
def max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
  """nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))) of
  x (n, h, w, c); its input gradient by `max_pool_gradient_by_phases`."""
  return _max_pool(x)


def _pool_forward(x):
  return _max_pool(x), x


def _pool_backward(x, cotangent):
  h, w = x.shape[1:3]
  # An odd side gets one more padding row or column, which no window reads
  # beyond the pool's own padding: the same output, a gradient to crop.
  even = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)),
                 constant_values=-jnp.inf)
  gradient = max_pool_gradient_by_phases(even, cotangent)
  return (gradient[:, :h, :w].astype(x.dtype),)


max_pool_3x3_stride2.defvjp(_pool_forward, _pool_backward)
