# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The procedural generators: determinism, labels, geometry bounds."""

import functools
import itertools

import numpy as np
import pytest

from ptopk_patch_selection.datasets import billiard_labels
from ptopk_patch_selection.datasets import billiard_scene
from ptopk_patch_selection.datasets import drawing
from ptopk_patch_selection.datasets import generation
from ptopk_patch_selection.datasets import traffic_scene

_TRAFFIC = traffic_scene.SceneSpec(256, 256, margin=16)
_BILLIARD = billiard_scene.TableSpec(192, 192, ball_radius=(10, 12))


def _boxes_px(bboxes, spec):
  return np.asarray(bboxes) * ([spec.height, spec.width] * 2)


@pytest.mark.parametrize("make_example, spec", [
    (traffic_scene.make_example, _TRAFFIC),
    (billiard_scene.make_example, _BILLIARD)])
def test_generator_is_deterministic_per_seed(make_example, spec):
  a = make_example(spec, 3, 0, 5)
  b = make_example(spec, 3, 0, 5)
  c = make_example(spec, 4, 0, 5)
  assert a["image"] == b["image"]
  np.testing.assert_array_equal(a["objects"]["bbox"], b["objects"]["bbox"])
  assert a["image"] != c["image"]


def test_parallel_generation_equals_serial():
  fn = functools.partial(traffic_scene.make_example, _TRAFFIC, 0, 0)
  serial = list(generation.parallel_map(fn, range(4), num_workers=0))
  parallel = list(generation.parallel_map(fn, range(4), num_workers=2))
  assert [e["image"] for e in serial] == [e["image"] for e in parallel]


def test_traffic_labels_match_objects_and_classes_are_balanced():
  labels = []
  for index in range(24):
    ex = traffic_scene.make_example(_TRAFFIC, 0, 1, index)
    objects = [{"number": int(n), "is_target": bool(t)} for n, t in
               zip(ex["objects"]["number"], ex["objects"]["is_target"])]
    assert traffic_scene.label_from_objects(objects) == ex["label"]
    assert 2 <= len(objects) <= 4
    for o in objects:
      assert o["is_target"] == (o["number"] in traffic_scene.TARGET_NUMBERS)
    labels.append(ex["label"])
  np.testing.assert_array_equal(np.bincount(labels), [6, 6, 6, 6])


def test_label_changes_only_the_target_sign():
  """Same generator state, other label: same scene, same ring count."""
  for index in range(8):
    scenes = [traffic_scene.render_scene(
        _TRAFFIC, label, drawing.example_rng(0, 0, index))[1]
              for label in range(4)]
    for objects in scenes[1:]:
      assert [o["bbox"] for o in objects] == [o["bbox"] for o in scenes[0]]
      changed = [a["number"] != b["number"]
                 for a, b in zip(objects, scenes[0])]
      assert sum(changed) <= 1


def test_traffic_boxes_are_disjoint_and_inside_margin():
  spec = _TRAFFIC
  for index in range(30):
    ex = traffic_scene.make_example(spec, 0, 0, index)
    boxes = _boxes_px(ex["objects"]["bbox"], spec)
    assert (boxes[:, :2] >= spec.margin - 1e-6).all()
    assert (boxes[:, 2:] <= [spec.height - spec.margin,
                             spec.width - spec.margin]).all()
    for a, b in itertools.combinations(boxes, 2):
      gap_y = max(a[0] - b[2], b[0] - a[2])
      gap_x = max(a[1] - b[3], b[1] - a[3])
      assert max(gap_y, gap_x) >= spec.min_gap - 1e-6


def test_billiard_labels_match_balls_and_number_discs_stay_visible():
  for index in range(27):
    rng = drawing.example_rng(0, 0, index)
    label = index % billiard_scene.NUM_CLASSES
    _, balls = billiard_scene.render_table(_BILLIARD, label, rng)
    assert billiard_labels.max_left_right(balls) == label
    assert 4 <= len(balls) <= 8
    xs = sorted(b["position"][0] for b in balls)
    radius = (balls[0]["bbox"][2] - balls[0]["bbox"][0]) * _BILLIARD.height / 2
    assert xs[1] - xs[0] >= radius / 4 - 1e-6
    for a, b in itertools.combinations(balls, 2):
      distance = np.hypot(*np.subtract(a["position"], b["position"]))
      assert distance >= _BILLIARD.min_center_distance * radius - 1e-3
    targets = [b["is_target"] for b in balls]
    assert targets[0] and targets[-1] and sum(targets) == 2


def test_billiard_label_functions():
  balls = [{"position": (x, 0), "number": n, "color": c}
           for x, n, c in ((0.5, 3, "red"), (-1.0, 7, "blue"),
                           (2.0, 4, "green"), (1.0, 9, "yellow"))]
  assert billiard_labels.max_left_right(balls) == 6  # max(7, 4) - 1
  assert billiard_labels.rightmost_number(balls) == 3
  assert billiard_labels.sum_all_modulo10(balls) == 3
  assert billiard_labels.left_color_min_max(balls) == 2  # blue: min 3 - 1
  balls[1]["color"] = "white"
  with pytest.raises(ValueError, match="white"):
    billiard_labels.left_color_min_max(balls)


def test_every_billiard_number_puts_the_same_ink_on_its_disc():
  """So average pooling cannot tell the numbers apart by their ink."""
  # pylint: disable=protected-access
  radius, size = 16.0, 128  # the sprite is drawn 4x supersampled
  disc = billiard_scene.DISC_RATIO * size / 2
  for number in range(1, billiard_scene.NUM_CLASSES + 1):
    mask, darkness = billiard_scene._number_ink(number, size, disc)
    ink = np.asarray(mask, np.float64).sum() / 255 * darkness
    assert 0.8 <= darkness <= 1.0
    np.testing.assert_allclose(
        ink, billiard_scene.INK_COVER * np.pi * disc**2, rtol=0.01)
  # The downsampled sprites still agree, up to resampling and rounding.
  sums = [np.asarray(billiard_scene._ball_sprite((200, 30, 30), n, radius),
                     np.float64)[..., :3].sum()
          for n in range(1, billiard_scene.NUM_CLASSES + 1)]
  ink = (billiard_scene.INK_COVER * np.pi *
         (billiard_scene.DISC_RATIO * radius)**2 * (240 - 15) * 3)
  assert max(sums) - min(sums) < 0.1 * ink  # 0.66 with plain digits


def test_billiard_disc_ratio_sets_the_number_disc_size():
  # pylint: disable=protected-access
  def disc_pixels(disc_ratio):
    sprite = np.asarray(billiard_scene._ball_sprite((30, 60, 190), 1, 24.0,
                                                    disc_ratio), np.float64)
    return (sprite[..., :3].min(-1) > 200).sum()  # the near-white disc
  sizes = [disc_pixels(ratio) for ratio in (0.155, 0.22, 0.5)]
  assert 0 < sizes[0] < sizes[1] < sizes[2]


def test_traffic_digit_height_sets_the_number_size():
  # pylint: disable=protected-access
  def ink_rows(digit_height):
    sprite = np.asarray(traffic_scene._ring_sign_sprite(
        np.random.default_rng(0), 60.0, "80", digit_height), np.float64)
    dark = (sprite[..., :3].max(-1) < 100) & (sprite[..., 3] > 200)  # ink
    rows = np.flatnonzero(dark.any(-1))
    return rows[-1] - rows[0] + 1
  heights = [ink_rows(ratio) for ratio in (0.25, 0.34, 0.5)]
  assert heights[0] < heights[1] < heights[2]
  assert abs(heights[1] - 0.34 * 60) <= 3  # the ink box is that tall


def test_texture_codes_differ_at_full_resolution_and_vanish_at_4x_and_8x():
  codes = {c: traffic_scene.texture_code(c, 64, 20, 240).astype(np.float64)
           for c in ("50", "70", "80", "")}
  for a, b in itertools.combinations(codes.values(), 2):
    assert np.abs(a - b).mean() > 50  # full resolution: plainly different
  for factor in (4, 8):
    pooled = [code.reshape(64 // factor, factor, 64 // factor, factor).mean(
        (1, 3)) for code in codes.values()]
    for block in pooled:  # every code averages to the flat grey
      np.testing.assert_allclose(block, pooled[-1], atol=0.5)


def test_texture_scenes_code_the_target_and_keep_the_geometry():
  """content="texture": same boxes and labels; the target's inside is
  striped, a distractor's flat, and both look alike after 8x pooling."""
  digits = traffic_scene.SceneSpec(256, 256, sign_diameter=(48, 60),
                                   margin=16)
  texture = traffic_scene.SceneSpec(256, 256, sign_diameter=(48, 60),
                                    margin=16, content="texture")
  for index in range(1, 4):  # labels 1-3: one target each
    _, digit_objects = traffic_scene.render_scene(
        digits, index, drawing.example_rng(0, 0, index))
    image, objects = traffic_scene.render_scene(
        texture, index, drawing.example_rng(0, 0, index))
    assert [o["bbox"] for o in objects] == [o["bbox"] for o in digit_objects]
    assert traffic_scene.label_from_objects(objects) == index
    pixels = np.asarray(image, np.float64).mean(-1)
    inside = []
    for o in objects:
      y0, x0, y1, x1 = (np.array(o["bbox"]) * 256).astype(int)
      cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
      inside.append(pixels[cy - 8:cy + 8, cx - 8:cx + 8])
      assert o["number"] == (traffic_scene.TARGET_NUMBERS[index - 1]
                             if o["is_target"] else 0)
    stripes = [np.abs(np.diff(p, axis=0)).mean() +
               np.abs(np.diff(p, axis=1)).mean() for p in inside]
    target = [o["is_target"] for o in objects].index(True)
    assert stripes[target] > 60
    assert all(s < 30 for i, s in enumerate(stripes) if i != target)
    # At 8x the target's inside has the distractors' grey, up to shading.
    pooled = [p.mean() for p in inside]
    distractor = np.mean([m for i, m in enumerate(pooled) if i != target])
    assert abs(pooled[target] - distractor) < 40


def test_scene_spec_rejects_unknown_content():
  with pytest.raises(ValueError, match="content='numbers'"):
    traffic_scene.SceneSpec(content="numbers")
