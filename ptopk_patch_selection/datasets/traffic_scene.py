# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Procedural road scenes with speed-limit signs among look-alikes (PIL only).

Each scene is a cluttered road-like picture (sky, buildings with windows,
trees, road with lane markings, cars, poles, other traffic signs, lighting
texture and grain) with 2-4 red-ring discs ("ring signs"). The label decides
whether one of them is a speed-limit sign:

  label 0 EMPTY   : every ring sign is a distractor;
  label 1/2/3     : exactly one ring sign reads 50 / 70 / 80 (the target), the
                    others are distractors.

Distractors read 20, 30, 60 or 90, show a horizontal bar, or are blank. The
number of ring signs is drawn independently of the label, so neither the
downscaled image nor counting rings tells the classes apart: only reading the
digits does. Ring signs are `sign_diameter` pixels wide (26-36 px by default),
readable at full resolution and at 4x downscaling, unreadable at 8x (see
data/README.md, readability).

With `SceneSpec.content="texture"` a sign's inside carries a code instead of
digits: 2 px stripes, horizontal for 50, vertical for 70, a checkerboard of
2 px squares for 80, and distractors are filled flat with the stripes' mean
grey. Any average over whole 4 px periods (an 8x or 4x downscale) turns every
code into that same grey, so the codes vanish at the scorer's resolution,
while a small CNN learns them from a few hundred examples, even from part of
a sign.

Geometry bound (tested): ring-sign bounding boxes are pairwise disjoint, at
least `min_gap` pixels apart, and at least `margin` pixels from the border.

Labels cycle 0, 1, 2, 3 with the example index (exactly balanced classes) and
each example is a pure function of (seed, split, index).
"""

import dataclasses

import numpy as np
from PIL import Image
from PIL import ImageDraw

from ptopk_patch_selection.datasets import drawing

CLASS_NAMES = ("EMPTY", "50_SIGN", "70_SIGN", "80_SIGN")
TARGET_NUMBERS = (50, 70, 80)  # label i (1..3) <-> TARGET_NUMBERS[i - 1]
DISTRACTOR_NUMBERS = (20, 30, 60, 90)
# Distractor contents: a number, a horizontal bar or nothing (number 0).
_DISTRACTOR_KINDS = tuple(str(n) for n in DISTRACTOR_NUMBERS) + ("bar", "")
# What a ring sign carries: its number in digits, or a texture code.
CONTENTS = ("digits", "texture")
TEXTURE_PERIOD = 4  # px; stripes and squares are half a period wide


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """Size and sign parameters of a scene.

  Attributes:
    height: image height in pixels.
    width: image width in pixels.
    sign_diameter: (min, max) ring-sign diameter in pixels.
    num_ring_signs: (min, max) ring signs per image, inclusive.
    margin: minimum distance of a ring sign from the image border (pixels).
    min_gap: minimum distance between two ring-sign boxes (pixels).
    digit_height: height of a sign's number as a fraction of its diameter.
      Real speed-limit signs have larger numbers, but at 0.5 they become
      partly readable at 8x (data/README.md), hence the smaller default.
    content: "digits" (the number, drawn) or "texture" (a texture code per
      target number, flat grey distractors; see the module docstring).
  """
  height: int = 512
  width: int = 512
  sign_diameter: tuple[int, int] = (26, 36)
  num_ring_signs: tuple[int, int] = (2, 4)
  margin: int = 48
  min_gap: int = 2
  digit_height: float = 0.34
  content: str = "digits"

  def __post_init__(self):
    if self.content not in CONTENTS:
      raise ValueError(f"content={self.content!r} is not one of {CONTENTS}.")


def _sky_and_ground(rng, h, w, horizon):
  """Sky gradient above `horizon`, ground colour below, as an RGB image."""
  top = rng.uniform([90, 120, 170], [170, 200, 250])
  bottom = rng.uniform([170, 180, 190], [235, 240, 250])
  t = np.linspace(0.0, 1.0, horizon)[:, None]
  sky = (1 - t) * top + t * bottom
  ground = rng.uniform([60, 80, 40], [130, 140, 90])
  column = np.concatenate([sky, np.tile(ground, (h - horizon, 1))], axis=0)
  arr = np.broadcast_to(column[:, None, :], (h, w, 3)).astype(np.uint8)
  return Image.fromarray(np.ascontiguousarray(arr))


def _draw_buildings(draw, rng, w, horizon):
  for _ in range(rng.integers(3, 9)):
    bw, bh = rng.uniform(0.08, 0.25) * w, rng.uniform(0.1, 0.8) * horizon
    x0 = rng.uniform(-0.1, 1.0) * w
    box = (x0, horizon - bh, x0 + bw, horizon + 2)
    draw.rectangle(box, fill=drawing.random_color(rng, 60, 220))
    win = drawing.random_color(rng, 20, 255)
    step = rng.uniform(8, 18)
    for wy in np.arange(box[1] + 4, horizon - 6, step):
      for wx in np.arange(x0 + 4, x0 + bw - 6, step):
        draw.rectangle((wx, wy, wx + step * 0.5, wy + step * 0.6), fill=win)


def _draw_road(draw, rng, h, w, horizon):
  vx = rng.uniform(0.3, 0.7) * w
  left, right = rng.uniform(-0.6, 0.2) * w, rng.uniform(0.8, 1.6) * w
  side = drawing.random_color(rng, 120, 190)
  draw.polygon([(vx - 4, horizon), (vx + 4, horizon), (right + 0.15 * w, h),
                (left - 0.15 * w, h)], fill=side)
  grey = int(rng.integers(60, 120))
  draw.polygon([(vx - 2, horizon), (vx + 2, horizon), (right, h), (left, h)],
               fill=(grey, grey, grey + 5))
  mid = (left + right) / 2
  for t0 in np.arange(0.05, 1.0, 0.12):
    t1 = t0 + 0.05
    draw.line([(vx + (mid - vx) * t0, horizon + (h - horizon) * t0),
               (vx + (mid - vx) * t1, horizon + (h - horizon) * t1)],
              fill=(235, 235, 225), width=max(1, int(6 * t1)))


def _draw_clutter(draw, rng, h, w, horizon):
  """Trees, cars, poles, wires, blobs and traffic signs without a red ring."""
  for _ in range(rng.integers(6, 16)):  # trees
    cx, cy = rng.uniform(0, w), rng.uniform(0.2, 1.1) * horizon
    rx, ry = rng.uniform(0.02, 0.08) * w, rng.uniform(0.03, 0.12) * h
    green = (int(rng.integers(20, 90)), int(rng.integers(70, 160)),
             int(rng.integers(20, 80)))
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=green)
  for _ in range(rng.integers(2, 7)):  # cars, some red or white
    cx, cy = rng.uniform(0, w), rng.uniform(horizon, h)
    size = 0.03 * w + 0.12 * w * (cy - horizon) / (h - horizon)
    color = ((200, 30, 30) if rng.random() < 0.3 else
             drawing.random_color(rng, 20, 250))
    draw.rounded_rectangle((cx - size, cy - size * 0.45, cx + size, cy),
                           radius=size * 0.15, fill=color)
  for _ in range(rng.integers(4, 12)):  # poles and wires
    x0, x1 = rng.uniform(0, w, 2)
    y0, y1 = rng.uniform(0, h, 2)
    draw.line((x0, y0, x1, y1), fill=drawing.random_color(rng, 30, 200),
              width=int(rng.integers(1, 4)))
  for _ in range(rng.integers(3, 10)):  # white and red blobs
    cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 22)
    color = (230, 40, 40) if rng.random() < 0.5 else (240, 240, 240)
    draw.ellipse((cx - r, cy - r, cx + r * rng.uniform(0.5, 1.5), cy + r),
                 fill=color)
  for _ in range(rng.integers(1, 5)):  # other traffic signs
    cx, cy = rng.uniform(0, w), rng.uniform(0.1, 0.9) * h
    r = rng.uniform(10, 22)
    kind = rng.integers(3)
    if kind == 0:  # warning triangle: white, red border
      pts = [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
      draw.polygon(pts, fill=(240, 240, 240), outline=(210, 30, 30),
                   width=max(2, int(r / 5)))
    elif kind == 1:  # mandatory: blue disc, white arrow
      draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(30, 70, 180))
      draw.line((cx, cy + r * 0.6, cx, cy - r * 0.5), fill=(245, 245, 245),
                width=max(2, int(r / 4)))
    else:  # information: blue square with a white digit-like glyph
      draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=(30, 80, 190))
      drawing.draw_centered_text(draw, (cx, cy), "P", r, (245, 245, 245))


def texture_code(content: str, size: int, dark: int,
                 light: int) -> np.ndarray:
  """uint8 (size, size) texture of a texture-mode sign's inside.

  "50": horizontal stripes, "70": vertical stripes, "80": a checkerboard,
  each of `TEXTURE_PERIOD` / 2 px; anything else: flat, the stripes' mean.
  """
  y, x = np.mgrid[:size, :size] // (TEXTURE_PERIOD // 2) % 2
  on = {"50": y, "70": x, "80": (y + x) % 2}.get(content)
  if on is None:
    return np.full((size, size), (dark + light + 1) // 2, np.uint8)
  return np.where(on == 1, dark, light).astype(np.uint8)


def _paint_texture(sprite, content, ring, dark, light):
  """Fills the white inside of an RGBA ring-sign sprite with its code."""
  rgba = np.array(sprite)
  h, w = rgba.shape[:2]
  radius = min(h, w) / 2 * (1 - 2 * ring) - 1.0  # clear of the ring's edge
  inside = drawing.disc_mask((h, w), (h / 2, w / 2), radius)
  code = texture_code(content, max(h, w), dark, light)[:h, :w]
  rgba[inside, :3] = code[inside, None]
  return Image.fromarray(rgba, "RGBA")


def _ring_sign_sprite(rng, diameter, content, digit_height,
                      texture=False):
  """A red-ring disc with `content` ("50", "bar", "" ...), as RGBA.

  With `texture`, the inside carries `texture_code(content)` instead.
  """
  red = (int(rng.integers(190, 236)), int(rng.integers(15, 55)),
         int(rng.integers(15, 55)))
  white = int(rng.integers(225, 256))
  ink = int(rng.integers(0, 40))
  ring = rng.uniform(0.11, 0.15)

  def draw_fn(draw, s):
    draw.ellipse((0, 0, s - 1, s - 1), fill=red + (255,))
    t = ring * s
    draw.ellipse((t, t, s - 1 - t, s - 1 - t), fill=(white,) * 3 + (255,))
    if texture:  # painted at the final resolution, below
      return
    if content == "bar":
      draw.rectangle((0.27 * s, 0.44 * s, 0.73 * s, 0.56 * s),
                     fill=(ink,) * 3 + (255,))
    elif content:
      drawing.draw_centered_text(draw, (s / 2, s / 2), content,
                                 digit_height * s,
                                 (ink,) * 3 + (255,))

  sprite = drawing.rgba_sprite(diameter, rng.uniform(0.85, 1.0), draw_fn)
  if texture:
    sprite = _paint_texture(sprite, content, ring, ink, white)
  shade = rng.uniform(0.75, 1.0)
  r, g, b, a = sprite.split()
  rgb = Image.merge("RGB", (r, g, b)).point(lambda v: int(v * shade))
  rgb.putalpha(a)
  return rgb


def _place_boxes(rng, spec, sizes):
  """Top-left corners for boxes of `sizes` [(w, h)] satisfying the bound."""
  boxes = []
  y_max = int(spec.height * 0.85)
  for w, h in sizes:
    for _ in range(1000):
      x = rng.integers(spec.margin, spec.width - spec.margin - w + 1)
      y = rng.integers(spec.margin, y_max - h + 1)
      g = spec.min_gap
      if all(x + w + g <= bx or bx + bw + g <= x or
             y + h + g <= by or by + bh + g <= y
             for bx, by, bw, bh in boxes):
        boxes.append((int(x), int(y), w, h))
        break
    else:
      raise RuntimeError("Could not place the ring signs; image too small.")
  return boxes


def render_scene(spec: SceneSpec, label: int, rng: np.random.Generator):
  """Draws one scene.

  Args:
    spec: scene size and sign parameters.
    label: 0 (EMPTY) or 1..3 (a 50, 70 or 80 sign is present).
    rng: the example's random generator.

  Returns:
    (image, objects): a PIL RGB image of (spec.width, spec.height) and a list
    of dicts {"bbox": (ymin, xmin, ymax, xmax) normalised to [0, 1],
    "number": int (0 for bar or blank), "is_target": bool}, one per ring sign.
  """
  h, w = spec.height, spec.width
  horizon = int(rng.uniform(0.3, 0.5) * h)
  image = _sky_and_ground(rng, h, w, horizon)
  draw = ImageDraw.Draw(image)
  _draw_buildings(draw, rng, w, horizon)
  _draw_road(draw, rng, h, w, horizon)
  _draw_clutter(draw, rng, h, w, horizon)

  num_signs = int(rng.integers(spec.num_ring_signs[0],
                               spec.num_ring_signs[1] + 1))
  contents = [str(_DISTRACTOR_KINDS[i]) for i in
              rng.integers(len(_DISTRACTOR_KINDS), size=num_signs)]
  texture = spec.content == "texture"
  if texture:  # every distractor is flat grey
    contents = [""] * num_signs
  if label > 0:
    contents[0] = str(TARGET_NUMBERS[label - 1])
  rng.shuffle(contents)  # always, so the rest of the scene ignores the label
  sprites = [_ring_sign_sprite(rng, rng.uniform(*spec.sign_diameter), c,
                               spec.digit_height, texture) for c in contents]
  boxes = _place_boxes(rng, spec, [s.size for s in sprites])
  pole = drawing.random_color(rng, 80, 160)
  for x, y, bw, bh in boxes:  # poles first, so no pole crosses a sign
    draw.line((x + bw / 2, y + bh, x + bw / 2, y + bh + rng.uniform(20, 80)),
              fill=pole, width=max(2, bw // 10))
  objects = []
  for sprite, content, (x, y, bw, bh) in zip(sprites, contents, boxes):
    image.paste(sprite, (x, y), sprite)
    objects.append({
        "bbox": (y / h, x / w, (y + bh) / h, (x + bw) / w),
        "number": int(content) if content.isdigit() else 0,
        "is_target": content in {str(n) for n in TARGET_NUMBERS},
    })

  light = drawing.noise_texture(rng, (h, w), cell=max(8, w // 16),
                                amplitude=rng.uniform(0.05, 0.2))
  arr = np.asarray(image, np.float32) * (1.0 + light)
  image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
  return drawing.add_noise(image, rng, int(rng.integers(2, 8))), objects


def label_from_objects(objects) -> int:
  """The label implied by an object list (the test of `render_scene`)."""
  targets = [o["number"] for o in objects if o["is_target"]]
  if len(targets) > 1:
    raise ValueError(f"More than one target sign: {targets}")
  return TARGET_NUMBERS.index(targets[0]) + 1 if targets else 0


def make_example(spec: SceneSpec, seed: int, split_index: int,
                 index: int) -> dict:
  """One TFDS example: JPEG bytes, label (index % 4) and ring-sign objects."""
  label = index % len(CLASS_NAMES)
  image, objects = render_scene(spec, label,
                                drawing.example_rng(seed, split_index, index))
  return drawing.example(image, label, objects)
