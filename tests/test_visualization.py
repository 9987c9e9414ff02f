# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of the selection pictures: shapes, box pixels, heat maps, strips."""

import subprocess
import sys

import matplotlib
import numpy as np
from PIL import Image
import pytest

from ptopk_patch_selection import patches
from ptopk_patch_selection import visualization as vis

# stride (10, 8), origin (-1, -2): patch (i, j) spans rows 10 i - 1 ..
# 10 i + 10 and columns 8 j - 2 .. 8 j + 9.
GRID = patches.PatchGrid(image_size=(40, 48), grid_size=(4, 6), patch_size=12)
RED = (255, 0, 0)


def _black():
  return np.zeros((40, 48, 3), np.float32)


def _is(image, color):
  return np.all(image == np.asarray(color, np.uint8), axis=-1)


def test_to_rgb_uint8_ranges_and_channels():
  np.testing.assert_array_equal(
      vis.to_rgb_uint8(np.array([[0.0, 0.5, 1.0, 2.0]])),
      np.repeat(np.array([[0, 128, 255, 255]], np.uint8)[..., None], 3, -1))
  np.testing.assert_array_equal(
      vis.to_rgb_uint8(np.full((1, 1, 3), -1.0), value_range=(-1, 1)), 0)
  four = np.arange(8, dtype=np.uint8).reshape(1, 2, 4)
  np.testing.assert_array_equal(vis.to_rgb_uint8(four), four[..., :3])
  with pytest.raises(ValueError, match="shape"):
    vis.to_rgb_uint8(np.zeros((2, 2, 2)))


def test_box_covers_the_patch_outline():
  drawn = vis.draw_patch_boxes(_black(), np.array([8]), GRID, color=RED,
                               labels=False, line_width=1)
  assert drawn.shape == (40, 48, 3) and drawn.dtype == np.uint8
  expected = np.zeros((40, 48), bool)  # Patch 8 = (1, 2): rows 9..20.
  expected[9:21, 14:26] = True
  expected[10:20, 15:25] = False
  np.testing.assert_array_equal(_is(drawn, RED), expected)
  np.testing.assert_array_equal(drawn[~expected], 0)


def test_boxes_overhanging_the_image_are_clipped():
  drawn = vis.draw_patch_boxes(_black(), np.array([0, 23]), GRID, color=RED,
                               labels=False, line_width=1)
  red = _is(drawn, RED)
  # Patch 0 spans rows -1..10, columns -2..9; patch 23 rows 29..40, columns
  # 38..49: both are cut at the image border.
  for y, x in [(0, 0), (0, 9), (10, 0), (10, 9), (29, 38), (29, 47),
               (39, 38), (39, 47)]:
    assert red[y, x], (y, x)
  assert not red[5, 5] and not red[35, 42]
  assert red.sum() == 2 * (2 * 11 + 2 * 10 - 4)


def test_labels_are_written_inside_the_box():
  image = np.zeros((120, 144, 3), np.uint8)
  grid = patches.PatchGrid((120, 144), (4, 6), 36)
  plain = vis.draw_patch_boxes(image, np.array([8]), grid, labels=False)
  labelled = vis.draw_patch_boxes(image, np.array([8]), grid)
  changed = np.argwhere(np.any(plain != labelled, axis=-1))
  top, left = (np.asarray(c) for c in grid.corners(np.array(8)))
  assert len(changed)
  assert np.all(changed >= [top, left])
  assert np.all(changed < [top + 18, left + 18])
  np.testing.assert_array_equal(image, 0)  # The input is not drawn on.


def test_image_of_the_wrong_size_raises():
  with pytest.raises(ValueError, match="image_size"):
    vis.draw_patch_boxes(np.zeros((40, 40, 3)), np.array([0]), GRID)


def test_object_boxes_use_normalised_coordinates():
  drawn = vis.draw_object_boxes(
      _black(), np.array([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.5, 0.5]]),
      mask=np.array([True, False]), line_width=1)
  green = _is(drawn, vis.OBJECT_COLOR)
  assert green[10, 24] and green[30, 47] and green[20, 24]
  assert not green[0, 0] and not green[20, 30]


def test_heatmap_is_bright_exactly_where_the_score_is_high():
  scores = np.zeros((4, 6))
  scores[2, 3] = 5.0  # Cell rows 20..29, columns 24..31.
  image = np.full((40, 48, 3), 0.5, np.float32)
  heat = vis.score_heatmap(image, scores, alpha=0.5)
  assert heat.shape == (40, 48, 3) and heat.dtype == np.uint8
  cmap = matplotlib.colormaps["inferno"]
  high = np.round(0.5 * 128 + 0.5 * 255 * np.asarray(cmap(1.0)[:3]))
  expected = np.zeros((40, 48), bool)
  expected[20:30, 24:32] = True
  np.testing.assert_array_equal(_is(heat, high), expected)
  assert np.all(heat[~expected].sum(-1) < heat[expected].sum(-1).min())
  np.testing.assert_array_equal(vis.score_heatmap(image, scores, alpha=0.0),
                                128)


def test_patch_strip_places_patches_between_separators():
  rng = np.random.default_rng(0)
  strip_patches = rng.random((3, 5, 5, 4)).astype(np.float32)
  strip = vis.patch_strip(strip_patches, separator=2)
  assert strip.shape == (5, 3 * 5 + 2 * 2, 3) and strip.dtype == np.uint8
  for r in range(3):
    np.testing.assert_array_equal(strip[:, 7 * r:7 * r + 5],
                                  vis.to_rgb_uint8(strip_patches[r]))
  np.testing.assert_array_equal(strip[:, [5, 6, 12, 13]], 255)


def _example(rng):
  image = rng.random((40, 48, 3)).astype(np.float32)
  scores = rng.normal(size=(4, 6))
  indices = np.array([0, 8, 23])
  extracted = np.asarray(patches.extract_patches_from_indices(
      image[None], indices[None], GRID))[0]
  return image, scores, indices, extracted


def test_selection_figure_combines_the_three_panels():
  image, scores, indices, extracted = _example(np.random.default_rng(1))
  figure = vis.selection_figure(image, scores, indices, extracted, GRID)
  width = 2 * 48 + vis.GAP
  strip_height = round(12 * width / (3 * 12 + 2 * 2))
  assert figure.shape == (40 + vis.GAP + strip_height, width, 3)
  np.testing.assert_array_equal(figure[:40, :48],
                                vis.draw_patch_boxes(image, indices, GRID))
  np.testing.assert_array_equal(figure[:40, 48 + vis.GAP:],
                                vis.score_heatmap(image, scores))
  titled = vis.selection_figure(image, scores, indices, extracted, GRID,
                                title="label 1", width=150)
  assert titled.shape[1] == 150
  assert titled.shape[0] > round(figure.shape[0] * 150 / width)  # The title.


def test_selection_figure_draws_object_boxes():
  image, scores, indices, extracted = _example(np.random.default_rng(2))
  image[:] = 0.0
  boxes = np.array([[0.5, 0.5, 0.75, 0.75], [0.1, 0.1, 0.2, 0.2]])
  figure = vis.selection_figure(image, scores, indices, extracted, GRID,
                                object_boxes=(boxes, np.array([True, False])))
  green = _is(figure[:40, :48], vis.OBJECT_COLOR)
  assert green[20, 30] and not green[4, 5]


def test_parts_figure_stacks_the_parts_beside_the_image():
  """NTS-Net: image | parts, pixel for pixel, [-1, 1] shown as [0, 255]."""
  rng = np.random.default_rng(5)
  image = rng.uniform(-1, 1, (40, 48, 3)).astype(np.float32)
  parts = rng.uniform(-1, 1, (3, 10, 10, 3)).astype(np.float32)
  parts[0] = -1.0
  parts[1] = 1.0
  figure = vis.parts_figure(image, parts, value_range=(-1.0, 1.0))
  assert figure.shape == (40, 48 + vis.GAP + 10, 3)  # 40 > 3 * 10 + 2 GAP
  np.testing.assert_array_equal(figure[:40, :48],
                                vis.to_rgb_uint8(image, (-1.0, 1.0)))
  left = 48 + vis.GAP
  np.testing.assert_array_equal(figure[:10, left:], 0)
  np.testing.assert_array_equal(figure[10 + vis.GAP:20 + vis.GAP, left:], 255)
  np.testing.assert_array_equal(figure[28:38, left:],
                                vis.to_rgb_uint8(parts[2], (-1.0, 1.0)))


def test_selection_picture_draws_what_the_model_gives():
  """"parts" (NTS-Net) draws parts figures, "indices" (PatchNet) patches."""
  rng = np.random.default_rng(6)
  image, scores, indices, extracted = _example(rng)
  common = dict(image=image[None], label=np.array([1]),
                prediction=np.array([2]))
  parts = rng.uniform(0, 1, (1, 2, 10, 10, 3))
  nts = vis.selection_picture(dict(common, parts=parts))
  np.testing.assert_array_equal(
      nts, vis.parts_figure(image, parts[0], title="label 1, predicted 2"))
  patchnet = vis.selection_picture(
      dict(common, scores=scores[None], indices=indices[None],
           patches=extracted[None]), GRID)
  np.testing.assert_array_equal(patchnet, vis.selection_figure(
      image, scores, indices, extracted, GRID,
      title="label 1, predicted 2"))


def test_selection_grid_stacks_figures():
  rng = np.random.default_rng(3)
  figures = [vis.selection_figure(*_example(rng), GRID, title=title)
             for title in ("a", "b")]
  narrow = rng.integers(0, 256, (5, 7, 3), np.uint8)
  stacked = vis.selection_grid(figures + [narrow], gap=3)
  height, width = figures[0].shape[:2]
  assert stacked.shape == (2 * height + 5 + 2 * 3, width, 3)
  np.testing.assert_array_equal(stacked[:height], figures[0])
  np.testing.assert_array_equal(stacked[height + 3:2 * height + 3],
                                figures[1])
  np.testing.assert_array_equal(stacked[-5:, :7], narrow)
  np.testing.assert_array_equal(stacked[-5:, 7:], 255)
  np.testing.assert_array_equal(stacked[height:height + 3], 255)


def test_save_png_round_trips(tmp_path):
  image = np.random.default_rng(4).integers(0, 256, (7, 9, 3), np.uint8)
  path = tmp_path / "sub" / "picture.png"
  vis.save_png(image, path)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), image)


def test_importable_without_jax_flax_or_tensorflow():
  code = ("import sys; import ptopk_patch_selection.visualization; "
          "print(sorted({'jax', 'flax', 'tensorflow'} & set(sys.modules)))")
  out = subprocess.run([sys.executable, "-c", code], check=True,
                       capture_output=True, text=True).stdout
  assert out.strip() == "[]"
