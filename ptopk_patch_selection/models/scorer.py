# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The patch scorer: a 4-layer CNN on the downscaled image (ATS's scorer).

On a (b, h', w', c) downscaled image, four 3x3 convolutions to 8, 16, 32 and 1
channels (ReLU between them, optional squeeze-excite after the 2nd and 3rd)
and an 8x8 max-pool of stride 8 give one score per grid cell, (b, H', W') with

  H' = (h' - 8) // 8,   W' = (w' - 8) // 8,   h' = h // downscale.

Traffic signs (960x1280, downscale 3): 39x52 = 2028 cells; billiard
(1000x1000, downscale 4): 30x30 = 900 cells.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

SCORER_PADDINGS = ("valid", "edge")
_CHANNELS = (8, 16, 32, 1)
_POOL = 8


def _unpadded_conv(channels: int, x: jax.Array) -> jax.Array:
  """A 3x3 "VALID" convolution, (b, h, w, c) -> (b, h - 2, w - 2, channels).

  Computed as a zero-padded convolution whose border ring is cropped: XLA:CPU
  runs padded convolutions 5-20x faster than unpadded ones at these sizes
  (16 -> 32 channels on 64x64: 7 ms vs 32 ms forward). Same parameters and
  outputs as `nn.Conv(channels, (3, 3), padding="VALID")`.
  """
  y = nn.Conv(channels, (3, 3), padding=((1, 1), (1, 1)))(x)
  return y[:, 1:-1, 1:-1]


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation (Hu et al. 2018) over all middle axes.

  x (b, ..., C) -> x * sigmoid(W2 relu(W1 mean(x))), with W1 of C // reduction
  (at least 1) units and no biases. The middle axes may be spatial (b, h, w, C)
  or a set of tokens (b, n, C).
  """
  reduction: int = 16

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    squeezed = x.mean(axis=tuple(range(1, x.ndim - 1)))
    squeezed = nn.relu(nn.Dense(max(channels // self.reduction, 1),
                                use_bias=False)(squeezed))
    gate = nn.sigmoid(nn.Dense(channels, use_bias=False)(squeezed))
    return x * gate.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (channels,))


class Scorer(nn.Module):
  """Scores (b, H', W') of a downscaled image (b, h', w', c).

  Attributes:
    use_se: squeeze-excite (reduction 16) after the 2nd and 3rd convolution.
    padding: "valid" (the paper): unpadded convolutions, so a cell's score
      only comes from positions whose 9x9 receptive field lies inside the
      image, then 8x8 max-pool windows at stride 8. "edge": every convolution
      first pads its input by 1 px with edge replication (the map keeps the
      input's size and border pixels see copies of their neighbours, never
      zeros), then 16x16 max-pool windows at stride 8. The grid is the same,
      ((h' - 8) // 8, (w' - 8) // 8), and cell (i, j) is centred where the
      "valid" cell is (input pixel 8i + 8), but its score is the maximum of
      per-pixel scores over its whole 16x16 region, outermost image rows
      included, instead of a maximum over the region's 8x8 interior.
  """
  use_se: bool = False
  padding: str = "valid"

  @staticmethod
  def grid_size(image_size: Sequence[int], downscale: int) -> tuple[int, int]:
    """(H', W') for an (h, w) image scored at 1/downscale resolution."""
    return tuple((side // downscale - _POOL) // _POOL for side in image_size)

  @staticmethod
  def cell_stride(downscale: int) -> int:
    """Cell stride in full-resolution pixels: cell (i, j) is centred on
    (c (i + 1), c (j + 1)) with c = 8 * downscale (either padding)."""
    return _POOL * downscale

  def __post_init__(self):
    if self.padding not in SCORER_PADDINGS:
      raise ValueError(f"padding={self.padding!r} is not one of "
                       f"{SCORER_PADDINGS}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for layer, channels in enumerate(_CHANNELS):
      if self.padding == "edge":
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
      x = _unpadded_conv(channels, x)
      if layer < len(_CHANNELS) - 1:
        x = nn.relu(x)
      if self.use_se and layer in (1, 2):
        x = SqueezeExcite()(x)
    window = _POOL if self.padding == "valid" else 2 * _POOL
    x = nn.max_pool(x, (window, window), strides=(_POOL, _POOL))
    return x[..., 0]
