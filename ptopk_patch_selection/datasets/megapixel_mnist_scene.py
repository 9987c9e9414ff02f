# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Megapixel MNIST scenes from real handwritten digits (numpy only).

The benchmark of Attention Sampling (Katharopoulos & Fleuret, ICML 2019),
reused by IPS (Bergner et al., ICLR 2023). One scene is a black canvas of
`height` x `width` pixels, one channel, with:

  * `num_digits` = 5 real MNIST digits at their native 28 x 28: 3 of the
    target class (the label, uniform over 0-9) and 2 drawn with replacement
    from the other 9 classes, each a digit image drawn from the split's pool
    of that class. Top-left corners are uniform in [m, h - 28 - m] x
    [m, w - 28 - m] (m = `margin`, 0 in the reference), redrawn until no
    two digits overlap (corners closer than 28 px on both axes count as
    overlap).
  * `num_noise` scribbles: 28 x 28 patterns drawn uniformly from a bank of
    `noise_bank_size` (two 1 px strokes each, see `noise_bank`), at
    top-left corners u * (h - 56, w - 56) + 28, u ~ U(0, 1)^2.

Each digit and scribble replaces the whole 28 x 28 square it lands on, as in
the reference generator: in the "ats" order (the reference's) scribbles come
last, so a scribble's square hides whatever part of a digit lies under it;
in the "ips" order the digits come last and are never hidden.

Labels: `label` the target (the majority digit), and IPS's `max` (largest of
the 5 digits), `top` (the digit with the smallest row, the topmost) and
`multi` (10-way multi-hot of the digits present). Objects: one per digit,
its box, its class and whether it is one of the 3 majority digits.

Every scene is a pure function of (seed, split, index, digit pool); the
noise bank is a pure function of the seed.
"""

import dataclasses
import io

import numpy as np
from PIL import Image

from ptopk_patch_selection.datasets import drawing

DIGIT_SIZE = 28
NUM_CLASSES = 10
NOISE_ORDERS = ("ats", "ips")
_MAX_PLACEMENT_TRIES = 10_000
_LAST_PIXEL = DIGIT_SIZE - 0.51  # rounds to the last row or column


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """A Megapixel MNIST layout (module docstring).

  Attributes:
    height, width: canvas size in pixels.
    num_digits: digits per scene; `num_target` of them are the label's.
    num_target: majority digits (the rest are of other classes).
    num_noise: scribbles per scene.
    noise_bank_size: distinct scribble patterns per dataset.
    noise_order: "ats" (scribbles drawn after the digits, hiding them where
      they land) or "ips" (before).
    margin: digits stay this many pixels from the border (0: the
      reference's; a model whose candidate patches do not reach the border
      needs it).
  """
  height: int = 1500
  width: int = 1500
  num_digits: int = 5
  num_target: int = 3
  num_noise: int = 50
  noise_bank_size: int = 50
  noise_order: str = "ats"
  margin: int = 0

  def __post_init__(self):
    if self.noise_order not in NOISE_ORDERS:
      raise ValueError(f"noise_order={self.noise_order!r} is not one of "
                       f"{NOISE_ORDERS}.")
    if not 2 * self.num_target > self.num_digits:
      raise ValueError(f"num_target={self.num_target} is not a majority of "
                       f"num_digits={self.num_digits}.")
    if min(self.height, self.width) < 2 * DIGIT_SIZE:
      raise ValueError(f"A {self.height}x{self.width} canvas is smaller "
                       f"than {2 * DIGIT_SIZE} px, the scribbles' range.")


def stroke(slope: float) -> np.ndarray:
  """bool (28, 28): a 1 px straight line from pixel (0, 0) to the far edge.

  The line runs along rows r and columns slope * r, sampled at 56 points
  (twice the side) and rounded to pixels, so it is unbroken at any slope.
  """
  # The last row before the line leaves the patch at its bottom or right.
  end = _LAST_PIXEL if slope <= 1 else _LAST_PIXEL / slope
  rows = np.linspace(0.0, end, 2 * DIGIT_SIZE)
  line = np.zeros((DIGIT_SIZE, DIGIT_SIZE), bool)
  line[np.round(rows).astype(int), np.round(slope * rows).astype(int)] = True
  return line


def noise_bank(seed: int, size: int) -> np.ndarray:
  """uint8 (size, 28, 28): the dataset's scribble patterns (the reference's).

  Pattern i is two strokes from its top-left corner: its own, of slope
  tan(u * pi / 2.5), u ~ U(0, 1) (0 to 72 degrees from the rows), and the
  stroke of another pattern (a random permutation), mirrored left to right
  with probability 1/3. Each inked pixel has intensity 255 * U(0.8, 1.0).
  """
  rng = np.random.default_rng([seed, 1 << 20])
  slopes = np.tan(rng.uniform(size=size) * np.pi / 2.5)
  own = np.stack([stroke(slope) for slope in slopes])
  other = own[rng.permutation(size)]
  mirrored = rng.uniform(size=size) < 1 / 3
  other[mirrored] = other[mirrored, :, ::-1]
  intensity = rng.uniform(0.8, 1.0, own.shape)
  return np.round(255 * intensity * (own | other)).astype(np.uint8)


def digit_corners(rng: np.random.Generator, spec: SceneSpec) -> np.ndarray:
  """int (num_digits, 2) top-left corners (y, x) of non-overlapping digits."""
  corners = []
  for _ in range(_MAX_PLACEMENT_TRIES):
    corner = rng.integers(spec.margin,
                          (spec.height - DIGIT_SIZE - spec.margin + 1,
                           spec.width - DIGIT_SIZE - spec.margin + 1))
    if all(np.any(np.abs(corner - other) >= DIGIT_SIZE) for other in corners):
      corners.append(corner)
      if len(corners) == spec.num_digits:
        return np.stack(corners)
  raise ValueError(f"Cannot place {spec.num_digits} digits on a "
                   f"{spec.height}x{spec.width} canvas.")


def scene_digits(rng: np.random.Generator, spec: SceneSpec) -> np.ndarray:
  """int (num_digits,) classes: num_target of the target first, then others.

  The target is uniform over 0-9; the others uniform over the other 9
  classes, with replacement.
  """
  target = int(rng.integers(NUM_CLASSES))
  others = rng.integers(NUM_CLASSES - 1, size=spec.num_digits - spec.num_target)
  others = others + (others >= target)  # skip the target
  return np.concatenate([np.full(spec.num_target, target), others])


@dataclasses.dataclass(frozen=True)
class Layout:
  """What one scene shows and where (module docstring).

  Attributes:
    classes: int (num_digits,): num_target of the label first, then others.
    digits: int (num_digits,): digit i is pools[classes[i]][digits[i]].
    corners: int (num_digits, 2): top-left (y, x) of each digit.
    scribbles: int (num_noise,): indices into the noise bank.
    scribble_corners: int (num_noise, 2): top-left (y, x) of each scribble.
  """
  classes: np.ndarray
  digits: np.ndarray
  corners: np.ndarray
  scribbles: np.ndarray
  scribble_corners: np.ndarray


def draw_layout(spec: SceneSpec, rng: np.random.Generator,
                pool_sizes: list[int], bank_size: int) -> Layout:
  """A random layout; pool_sizes[c] digits of class c, bank_size scribbles."""
  classes = scene_digits(rng, spec)
  corners = digit_corners(rng, spec)
  digits = np.array([rng.integers(pool_sizes[c]) for c in classes])
  scribbles = rng.integers(bank_size, size=spec.num_noise)
  scale = np.array([spec.height, spec.width]) - 2 * DIGIT_SIZE
  scribble_corners = (rng.uniform(size=(spec.num_noise, 2)) * scale).astype(
      int) + DIGIT_SIZE
  return Layout(classes, digits, corners, scribbles, scribble_corners)


def render(spec: SceneSpec, layout: Layout, pools: list[np.ndarray],
           bank: np.ndarray) -> np.ndarray:
  """uint8 (height, width): the layout's squares pasted in spec's order.

  Args:
    spec: the scene specification (size, noise order).
    layout: what goes where.
    pools: pools[c] is uint8 (n_c, 28, 28), the split's digits of class c.
    bank: uint8 (bank size, 28, 28) scribble patterns.
  """
  digits = [pools[c][i] for c, i in zip(layout.classes, layout.digits)]
  layers = [(digits, layout.corners),
            (bank[layout.scribbles], layout.scribble_corners)]
  if spec.noise_order == "ips":
    layers.reverse()
  canvas = np.zeros((spec.height, spec.width), np.uint8)
  for patterns, places in layers:
    for pattern, (top, left) in zip(patterns, places):
      canvas[top:top + DIGIT_SIZE, left:left + DIGIT_SIZE] = pattern
  return canvas


def make_example(spec: SceneSpec, seed: int, split_index: int, index: int,
                 pools: list[np.ndarray], bank: np.ndarray) -> dict:
  """One TFDS example: grayscale PNG, the four labels and digit objects."""
  layout = draw_layout(spec, drawing.example_rng(seed, split_index, index),
                       [len(pool) for pool in pools], len(bank))
  canvas = render(spec, layout, pools, bank)
  classes, corners = layout.classes, layout.corners
  size = np.array([spec.height, spec.width] * 2, np.float32)
  boxes = np.concatenate([corners, corners + DIGIT_SIZE], axis=1) / size
  buffer = io.BytesIO()
  Image.fromarray(canvas).save(buffer, format="PNG", compress_level=1)
  multi = np.zeros(NUM_CLASSES, bool)
  multi[classes] = True
  return {
      "image": buffer.getvalue(),
      "label": int(classes[0]),
      "max": int(classes.max()),
      "top": int(classes[np.argmin(corners[:, 0])]),
      "multi": multi,
      "objects": {
          "bbox": boxes.astype(np.float32),
          "digit": classes.astype(np.int32),
          "is_target": np.arange(spec.num_digits) < spec.num_target,
      },
  }
