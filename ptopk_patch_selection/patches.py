# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Candidate-patch geometry and patch extraction (hard and soft).

The scorer's output grid (H', W') defines d = H' * W' candidate patches of the
full-resolution image: cell (i, j) has stride (s_h, s_w) = (h // H', w // W')
and its patch is a `patch_size` square whose top-left corner in image
coordinates is (i * s_h - (p - s_h) // 2, j * s_w - (p - s_w) // 2), i.e.
roughly centred on the cell, as in the released code. That cell is not quite
where the scorer looked: score (i, j) comes from the region centred at
(c (i + 1), c (j + 1)) in image pixels, c = 8 * downscale (models/scorer.py),
27-43 px away from its patch's centre for the default's 7x7 grid on 512 px.
`PatchGrid(..., cell_stride=c)` centres patch (i, j) there instead: stride
(c, c) and top-left corner (c (i + 1) - p // 2, c (j + 1) - p // 2).

Parts of a patch that fall outside the image are padded ("constant" zeros as
in the released code, or "edge" / "reflect", which do not create artificial
edges at the border).

Three extractors, all returning (b, k, p, p, c):
  * `extract_patches_from_indices`: hard selection, one dynamic_slice per
    patch (inference).
  * `extract_patches_scan`: soft selection; a `lax.scan` over the k slots,
    each slot's patch the indicator-weighted sum of all candidate patches.
  * `extract_patches_matmul`: the same soft patches for all slots in one
    matrix product (the fast path).

Both soft paths avoid materialising the d candidate patches. Write a pixel
offset inside a patch as u = q * s + t (0 <= t < s): pixel u of patch i is
pixel t of stride-block i + q. With the aligned image cut into blocks
B[I, t, J, t', c], the soft patch of weights W (H', W') is
  out[q, t, q', t', c] = sum_{I,J} W[I - q, J - q'] B[I, t, J, t', c],
one product of the k * Q * Q' shifted weight maps (Q = ceil(p / s)) with the
blocks, which costs about as much as reading the image k * Q * Q' times.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

PADDING_MODES = ("constant", "edge", "reflect")


@dataclasses.dataclass(frozen=True)
class PatchGrid:
  """Candidate patches of an image, one per cell of the scorer grid.

  Attributes:
    image_size: (h, w) of the full-resolution image.
    grid_size: (H', W') of the scorer's output.
    patch_size: side p of the square patches.
    cell_stride: None: the released geometry (stride h // H', w // W').
      Else the scorer's cell stride c in image pixels: patch (i, j) is
      centred on (c (i + 1), c (j + 1)), where score (i, j) looked.
  """
  image_size: tuple[int, int]
  grid_size: tuple[int, int]
  patch_size: int
  cell_stride: int | None = None

  def __post_init__(self):
    (h, w), (gh, gw), p = self.image_size, self.grid_size, self.patch_size
    if min(h, w) < 1 or min(gh, gw) < 1:
      raise ValueError(f"image_size {self.image_size} and grid_size "
                       f"{self.grid_size} must be positive.")
    if gh > h or gw > w:
      raise ValueError(f"grid_size {self.grid_size} does not fit the image "
                       f"{h}x{w}: every grid cell needs at least one pixel.")
    if not 1 <= p <= min(h, w):
      raise ValueError(f"patch_size={p} must be between 1 and the image's "
                       f"smaller side ({h}x{w}).")
    c = self.cell_stride
    if c is not None and not (c >= 1 and c * gh <= h and c * gw <= w):
      raise ValueError(f"cell_stride={c}: {gh}x{gw} cells of {c} px do not "
                       f"fit the image {h}x{w}.")

  @property
  def num_patches(self) -> int:
    return self.grid_size[0] * self.grid_size[1]

  @property
  def stride(self) -> tuple[int, int]:
    if self.cell_stride is not None:
      return (self.cell_stride, self.cell_stride)
    return (self.image_size[0] // self.grid_size[0],
            self.image_size[1] // self.grid_size[1])

  @property
  def origin(self) -> tuple[int, int]:
    """Top-left corner of patch (0, 0) in image coordinates (may be < 0)."""
    if self.cell_stride is not None:
      return (self.cell_stride - self.patch_size // 2,) * 2
    return tuple(-((self.patch_size - s) // 2) for s in self.stride)

  def corners(self, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Top-left (row, col) in image coordinates of flat patch indices."""
    rows, cols = jnp.divmod(indices, self.grid_size[1])
    (sh, sw), (oh, ow) = self.stride, self.origin
    return rows * sh + oh, cols * sw + ow


def _align_axis(images, axis, start, length, mode):
  """Rows [start, start + length) of `axis`, padded by `mode` outside."""
  size = images.shape[axis]
  begin, end = max(start, 0), min(start + length, size)
  images = jax.lax.slice_in_dim(images, begin, end, axis=axis)
  pad = [(0, 0)] * images.ndim
  pad[axis] = (begin - start, start + length - end)
  return jnp.pad(images, pad, mode=mode)


def aligned_image(images: jax.Array, grid: PatchGrid, height: int, width: int,
                  padding: str = "constant") -> jax.Array:
  """Crop/pad (b, h, w, c) images so that patch (i, j) starts at (i s_h, j s_w).

  Returns (b, height, width, c); pixels outside the image follow `padding`.
  """
  if padding not in PADDING_MODES:
    raise ValueError(f"padding={padding!r} is not one of {PADDING_MODES}.")
  if tuple(images.shape[1:3]) != tuple(grid.image_size):
    raise ValueError(f"images of size {images.shape[1:3]} do not match the "
                     f"grid's image_size {grid.image_size}.")
  images = _align_axis(images, 1, grid.origin[0], height, padding)
  return _align_axis(images, 2, grid.origin[1], width, padding)


def extract_patches_from_indices(images: jax.Array, indices: jax.Array,
                                 grid: PatchGrid,
                                 padding: str = "constant") -> jax.Array:
  """Hard patches: images (b, h, w, c), indices (b, k) -> (b, k, p, p, c)."""
  p = grid.patch_size
  (gh, gw), (sh, sw) = grid.grid_size, grid.stride
  padded = aligned_image(images, grid, (gh - 1) * sh + p, (gw - 1) * sw + p,
                         padding)
  rows, cols = jnp.divmod(indices, gw)

  def one_image(image, rows, cols):
    def one_patch(row, col):
      return jax.lax.dynamic_slice(image, (row * sh, col * sw, 0),
                                   (p, p, image.shape[-1]))
    return jax.vmap(one_patch)(rows, cols)

  return jax.vmap(one_image)(padded, rows, cols)


def _stride_blocks(images, grid, padding):
  """(b, h, w, c) -> blocks (b, I, J, s_h, s_w, c) of the aligned image."""
  (gh, gw), (sh, sw) = grid.grid_size, grid.stride
  qh, qw = (math.ceil(grid.patch_size / s) for s in (sh, sw))
  nh, nw = gh + qh - 1, gw + qw - 1
  padded = aligned_image(images, grid, nh * sh, nw * sw, padding)
  b, c = images.shape[0], images.shape[-1]
  blocks = padded.reshape(b, nh, sh, nw, sw, c)
  return blocks.transpose(0, 1, 3, 2, 4, 5)


def _weighted_patches(blocks, weights, grid):
  """Soft patches: stride blocks and weights (b, k, d) -> (b, k, p, p, c)."""
  b, nh, nw, sh, sw, c = blocks.shape
  gh, gw = grid.grid_size
  qh, qw = nh - gh + 1, nw - gw + 1
  k = weights.shape[1]
  maps = weights.reshape(b, k, gh, gw).astype(blocks.dtype)
  shifted = jnp.stack([
      jnp.pad(maps, ((0, 0), (0, 0), (q, qh - 1 - q), (r, qw - 1 - r)))
      for q in range(qh) for r in range(qw)
  ], axis=2)  # (b, k, qh * qw, nh, nw)
  out = jnp.einsum("bkqij,bijtuc->bkqtuc", shifted, blocks)
  out = out.reshape(b, k, qh, qw, sh, sw, c).transpose(0, 1, 2, 4, 3, 5, 6)
  p = grid.patch_size
  return out.reshape(b, k, qh * sh, qw * sw, c)[:, :, :p, :p]


def _check_indicators(indicators, grid):
  if indicators.ndim != 3 or indicators.shape[-1] != grid.num_patches:
    raise ValueError(f"indicators must have shape (b, k, {grid.num_patches}),"
                     f" got {indicators.shape}.")


def extract_patches_matmul(images: jax.Array, indicators: jax.Array,
                           grid: PatchGrid,
                           padding: str = "constant") -> jax.Array:
  """Soft patches of all slots at once (the fast path).

  Args:
    images: (b, h, w, c).
    indicators: (b, k, d) weights over the candidate patches.
    grid: the candidate-patch geometry.
    padding: "constant", "edge" or "reflect".

  Returns:
    (b, k, p, p, c): patch r is sum_j indicators[:, r, j] * patch_j.
  """
  _check_indicators(indicators, grid)
  return _weighted_patches(_stride_blocks(images, grid, padding), indicators,
                           grid)


def extract_patches_scan(images: jax.Array, indicators: jax.Array,
                         grid: PatchGrid,
                         padding: str = "constant") -> jax.Array:
  """Soft patches, one slot per `lax.scan` step (lowest memory).

  Same arguments and result as `extract_patches_matmul`; the working set is
  one slot's patches instead of all k.
  """
  _check_indicators(indicators, grid)
  blocks = _stride_blocks(images, grid, padding)

  def one_slot(carry, weights):
    return carry, _weighted_patches(blocks, weights[:, None], grid)[:, 0]

  _, patches = jax.lax.scan(one_slot, None, jnp.swapaxes(indicators, 0, 1))
  return jnp.swapaxes(patches, 0, 1)
