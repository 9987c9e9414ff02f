# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of the patch geometry and the three extractors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ptopk_patch_selection import patches
from ptopk_patch_selection import perturbed_topk as ptopk

GRID = patches.PatchGrid(image_size=(37, 45), grid_size=(4, 5), patch_size=13)
K = 3


@pytest.fixture(name="images")
def _images():
  return jax.random.normal(jax.random.key(0), (2, 37, 45, 3))


@pytest.fixture(name="indices")
def _indices():
  return ptopk.topk_indices(jax.random.normal(jax.random.key(1), (2, 20)), K)


def _patches_by_hand(images, indices, grid, padding):
  margin = grid.patch_size
  padded = np.pad(np.asarray(images), ((0, 0), (margin,) * 2, (margin,) * 2,
                                       (0, 0)), mode=padding)
  rows, cols = grid.corners(indices)
  p = grid.patch_size
  out = np.zeros(indices.shape + (p, p, images.shape[-1]))
  for b, r in np.ndindex(*indices.shape):
    y, x = int(rows[b, r]) + margin, int(cols[b, r]) + margin
    out[b, r] = padded[b, y:y + p, x:x + p]
  return out


def test_paper_geometry():
  traffic = patches.PatchGrid((960, 1280), (39, 52), 100)
  assert traffic.num_patches == 2028
  assert traffic.stride == (24, 24)
  assert traffic.origin == (-38, -38)  # the released code's top/left padding
  billiard = patches.PatchGrid((1000, 1000), (30, 30), 100)
  assert billiard.stride == (33, 33) and billiard.origin == (-33, -33)
  rows, cols = traffic.corners(jnp.array([0, 53]))
  np.testing.assert_array_equal(rows, [-38, -14])
  np.testing.assert_array_equal(cols, [-38, -14])


@pytest.mark.parametrize("kwargs, message", [
    (dict(patch_size=40), "patch_size=40"),
    (dict(grid_size=(40, 5)), "grid_size"),
    (dict(patch_size=0), "patch_size=0"),
])
def test_invalid_geometry_raises(kwargs, message):
  arguments = dict(image_size=(37, 45), grid_size=(4, 5), patch_size=13)
  with pytest.raises(ValueError, match=message):
    patches.PatchGrid(**(arguments | kwargs))


@pytest.mark.parametrize("padding", patches.PADDING_MODES)
def test_index_path_equals_slicing_by_hand(images, indices, padding):
  extracted = patches.extract_patches_from_indices(images, indices, GRID,
                                                   padding)
  assert extracted.shape == (2, K, 13, 13, 3)
  np.testing.assert_array_equal(
      extracted, _patches_by_hand(images, indices, GRID, padding))


def test_patch_smaller_than_stride_is_centred_in_its_cell(images):
  grid = patches.PatchGrid((37, 45), (4, 5), 5)  # stride 9 > patch 5
  indices = jnp.array([[0, 7, 19]] * 2)
  extracted = patches.extract_patches_from_indices(images, indices, grid)
  np.testing.assert_array_equal(
      extracted, _patches_by_hand(images, indices, grid, "constant"))
  assert grid.origin == (2, 2)


@pytest.mark.parametrize("padding", patches.PADDING_MODES)
def test_soft_paths_equal_index_path_for_one_hot(images, indices, padding):
  hard = patches.extract_patches_from_indices(images, indices, GRID, padding)
  one_hot = ptopk.indicators_from_indices(indices, GRID.num_patches)
  for extract in (patches.extract_patches_matmul, patches.extract_patches_scan):
    np.testing.assert_allclose(extract(images, one_hot, GRID, padding), hard,
                               atol=1e-6)


def test_soft_paths_are_the_weighted_sum_of_candidates(images):
  weights = jax.random.uniform(jax.random.key(2), (2, K, GRID.num_patches))
  every = jnp.broadcast_to(jnp.arange(GRID.num_patches), (2, 20))
  candidates = patches.extract_patches_from_indices(images, every, GRID)
  expected = jnp.einsum("bkd,bdhwc->bkhwc", weights, candidates)
  matmul = patches.extract_patches_matmul(images, weights, GRID)
  scan = patches.extract_patches_scan(images, weights, GRID)
  np.testing.assert_allclose(matmul, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(scan, matmul, rtol=1e-6, atol=1e-6)


def test_gradients_reach_the_indicators(images):
  weights = jax.random.uniform(jax.random.key(3), (2, K, GRID.num_patches))
  target = jax.random.normal(jax.random.key(4), (2, K, 13, 13, 3))
  every = jnp.broadcast_to(jnp.arange(GRID.num_patches), (2, 20))
  candidates = patches.extract_patches_from_indices(images, every, GRID)
  # d/dw[b,r,j] of <target, patches> is <target[b, r], candidate_j>.
  expected = jnp.einsum("bkhwc,bdhwc->bkd", target, candidates)
  for extract in (patches.extract_patches_matmul, patches.extract_patches_scan):
    grad = jax.grad(lambda w, f=extract: jnp.sum(
        target * f(images, w, GRID)))(weights)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-4)


def test_mismatched_inputs_raise(images):
  with pytest.raises(ValueError, match="indicators"):
    patches.extract_patches_matmul(images, jnp.ones((2, K, 7)), GRID)
  with pytest.raises(ValueError, match="image_size"):
    patches.extract_patches_matmul(images[:, :30], jnp.ones((2, K, 20)), GRID)
  with pytest.raises(ValueError, match="padding"):
    patches.extract_patches_matmul(images, jnp.ones((2, K, 20)), GRID, "wrap")
