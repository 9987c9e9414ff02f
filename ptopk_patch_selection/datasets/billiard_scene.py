# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Procedural billiard tables with numbered balls (PIL only).

A textured felt table with wooden rails and pockets holds 4-8 balls of random
colours, each showing its number (1-9) on a white disc facing the camera.
Label = max(number of the leftmost ball, number of the rightmost ball) - 1
(the paper's `max-left-right`, 9 classes). Labels cycle with the example index
(exactly balanced): the larger extreme number is label + 1, the other extreme
is uniform in 1..label + 1 and the inner balls are uniform in 1..9, so the
largest number on the table is often not the answer.

Numbers are small (digits DIGIT_RATIO * disc_ratio * R tall, about 4 px in
both configs) and every number puts the same amount of ink on its disc (thin
digits emboldened, inky ones drawn lighter), so the digits are readable at
full resolution, but neither their shape nor their amount of ink survives
average pooling by 4 (data/README.md, readability).

Geometry bound (tested): all balls of a scene have the same radius R, centres
are at least `min_center_distance` * R apart (1.6 by default), so a ball may
hide part of another but never its number disc (radius `disc_ratio` * R);
the leftmost and rightmost balls are at least R / 4 further out in x than
any other ball. Each example is a pure function of (seed, split, index).
"""

import dataclasses

import numpy as np
from PIL import Image
from PIL import ImageDraw

from ptopk_patch_selection.datasets import drawing

NUM_CLASSES = 9
DISC_RATIO = 0.22  # default number disc radius / ball radius
DIGIT_RATIO = 1.15  # digit height / number disc radius
INK_COVER = 0.11  # ink of every number / disc area (_number_ink)
_DISC = (245, 245, 240)  # disc colour
_INK = (15, 15, 15)  # colour of fully dark digits
BALL_COLORS = {
    "yellow": (235, 200, 30), "blue": (30, 60, 190), "red": (200, 30, 30),
    "purple": (110, 40, 140), "orange": (240, 120, 20),
    "green": (20, 130, 60), "maroon": (120, 25, 35), "black": (25, 25, 25),
}


@dataclasses.dataclass(frozen=True)
class TableSpec:
  """Image size and ball parameters.

  Attributes:
    height: image height in pixels.
    width: image width in pixels.
    ball_radius: (min, max) radius in pixels (one radius per image).
    num_balls: (min, max) balls per image, inclusive.
    min_center_distance: minimum centre distance, in radii.
    disc_ratio: number disc radius / ball radius; larger balls need a smaller
      ratio to keep their digits unreadable when downscaled.
  """
  height: int = 512
  width: int = 512
  ball_radius: tuple[int, int] = (14, 18)
  num_balls: tuple[int, int] = (4, 8)
  min_center_distance: float = 1.6
  disc_ratio: float = DISC_RATIO


def _draw_table(rng, h, w):
  """Felt with a smooth texture, wooden rails and six pockets."""
  felt = rng.uniform([20, 90, 40], [60, 150, 120])
  texture = drawing.noise_texture(rng, (h, w), max(4, w // 64), 0.12)
  arr = np.clip(felt * (1.0 + texture), 0, 255).astype(np.uint8)
  image = Image.fromarray(arr)
  draw = ImageDraw.Draw(image)
  rail = int(0.04 * min(h, w))
  wood = drawing.random_color(rng, 70, 150)
  for box in ((0, 0, w, rail), (0, h - rail, w, h), (0, 0, rail, h),
              (w - rail, 0, w, h)):
    draw.rectangle(box, fill=wood)
  r = rail * 0.9
  for x, y in ((rail, rail), (w / 2, rail * 0.8), (w - rail, rail),
               (rail, h - rail), (w / 2, h - rail * 0.8), (w - rail, h - rail)):
    draw.ellipse((x - r, y - r, x + r, y + r), fill=(10, 10, 10))
  return image, rail


def _dilate(mask: np.ndarray) -> np.ndarray:
  """3x3 grey dilation of a 2-D array (zero outside)."""
  h, w = mask.shape
  padded = np.pad(mask, 1)
  return np.max([padded[i:i + h, j:j + w] for i in range(3) for j in range(3)],
                axis=0)


def _number_ink(number: int, size: int, disc: float):
  """The digits of `number` as an ink mask, and how dark to draw them.

  Every number gets the same amount of ink, INK_COVER of its disc area in
  `_INK`: digits with less ink are emboldened (whole 3x3 dilations, then a
  partial one blended in), digits with more ink are drawn in a lighter grey.

  Args:
    number: the ball's number.
    size: side of the (supersampled) sprite; the disc is centred in it.
    disc: disc radius, in the same pixels.

  Returns:
    (mask, darkness): an L image of side `size` (255 = ink) and the share in
    [0, 1] of the way from the disc colour to `_INK` to draw it with.
  """
  image = Image.new("L", (size, size), 0)
  drawing.draw_centered_text(ImageDraw.Draw(image), (size / 2, size / 2),
                             str(number), DIGIT_RATIO * disc, 255)
  mask = np.asarray(image, np.float64) / 255
  target = INK_COVER * np.pi * disc**2  # in fully inked pixels
  if mask.sum() < target:
    while (bolder := _dilate(mask)).sum() < target:
      mask = bolder
    share = (target - mask.sum()) / (bolder.sum() - mask.sum())
    mask += share * (bolder - mask)
  mask = np.round(mask * 255).astype(np.uint8)
  return Image.fromarray(mask), min(1.0, target / (mask.sum() / 255))


def _ball_sprite(color, number, radius, disc_ratio=DISC_RATIO):
  """A shaded ball with `number` on a white disc of disc_ratio * radius."""
  base = np.array(color, np.float32)

  def draw_fn(draw, s):
    # Concentric discs from dark rim to a lighter centre above-left: shading.
    for t in np.linspace(0.0, 1.0, 8):
      rad = s / 2 * (1.0 - 0.55 * t)
      cx = cy = s / 2 - 0.15 * s * t
      shade = np.clip(base * (0.55 + 0.6 * t), 0, 255).astype(int)
      draw.ellipse((cx - rad, cy - rad, cx + rad, cy + rad),
                   fill=tuple(shade) + (255,))
    disc = disc_ratio * s / 2
    draw.ellipse((s / 2 - disc, s / 2 - disc, s / 2 + disc, s / 2 + disc),
                 fill=_DISC + (255,))
    mask, darkness = _number_ink(number, s, disc)
    ink = np.array(_DISC) - darkness * np.subtract(_DISC, _INK)
    draw.bitmap((0, 0), mask, fill=tuple(np.round(ink).astype(int)) + (255,))

  return drawing.rgba_sprite(2 * radius, 1.0, draw_fn)


def _numbers(rng, label, num_balls):
  """Numbers in left-to-right order with max(first, last) = label + 1."""
  top = label + 1
  other = int(rng.integers(1, top + 1))
  ends = (top, other) if rng.random() < 0.5 else (other, top)
  inner = [int(n) for n in rng.integers(1, 10, num_balls - 2)]
  return [ends[0]] + inner + [ends[1]]


def _place_centres(rng, spec, radius, num_balls, rail):
  """Centres (x, y) sorted by x, satisfying the geometry bound."""
  pad = rail + radius + 2
  lo, hi = np.array([pad, pad]), np.array([spec.width, spec.height]) - pad
  for _ in range(1000):
    centres = []
    for _ in range(num_balls):
      for _ in range(100):
        c = rng.uniform(lo, hi)
        if all(np.hypot(*(c - o)) >= spec.min_center_distance * radius
               for o in centres):
          centres.append(c)
          break
    if len(centres) < num_balls:
      continue
    xs = np.sort([c[0] for c in centres])
    if xs[1] - xs[0] >= radius / 4 and xs[-1] - xs[-2] >= radius / 4:
      return sorted(centres, key=lambda c: c[0])
  raise RuntimeError("Could not place the balls; table too small.")


def render_table(spec: TableSpec, label: int, rng: np.random.Generator):
  """Draws one table.

  Args:
    spec: image size and ball parameters.
    label: the class, 0..8.
    rng: the example's random generator.

  Returns:
    (image, balls): a PIL RGB image and one dict per ball, left to right:
    {"position": (x, y) in pixels, "number", "color", "bbox": (ymin, xmin,
    ymax, xmax) normalised, "is_target": leftmost or rightmost}.
  """
  image, rail = _draw_table(rng, spec.height, spec.width)
  radius = rng.uniform(*spec.ball_radius)
  num_balls = int(rng.integers(spec.num_balls[0], spec.num_balls[1] + 1))
  numbers = _numbers(rng, label, num_balls)
  centres = _place_centres(rng, spec, radius, num_balls, rail)
  names = list(BALL_COLORS)
  balls = []
  for i, (c, number) in enumerate(zip(centres, numbers)):
    color = names[int(rng.integers(len(names)))]
    balls.append({
        "position": (float(c[0]), float(c[1])), "number": number,
        "color": color, "is_target": i in (0, num_balls - 1),
        "bbox": (max(c[1] - radius, 0) / spec.height,
                 max(c[0] - radius, 0) / spec.width,
                 min(c[1] + radius, spec.height) / spec.height,
                 min(c[0] + radius, spec.width) / spec.width),
    })
  for i in rng.permutation(num_balls):  # random depth order
    ball = balls[i]
    sprite = _ball_sprite(BALL_COLORS[ball["color"]], ball["number"], radius,
                          spec.disc_ratio)
    x, y = ball["position"]
    image.paste(sprite, (int(round(x - sprite.size[0] / 2)),
                         int(round(y - sprite.size[1] / 2))), sprite)
  return drawing.add_noise(image, rng, 3), balls


def make_example(spec: TableSpec, seed: int, split_index: int,
                 index: int) -> dict:
  """One TFDS example: JPEG bytes, label (index % 9) and ball objects."""
  label = index % NUM_CLASSES
  rng = drawing.example_rng(seed, split_index, index)
  image, balls = render_table(spec, label, rng)
  return drawing.example(image, label, balls)
