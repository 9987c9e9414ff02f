# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Megapixel MNIST scenes from real handwritten digits (numpy only).

The benchmark of Attention Sampling (Katharopoulos & Fleuret, ICML 2019),
reused by IPS (Bergner et al., ICLR 2023). One scene is a black canvas of
`height` x `width` pixels, one channel, with:

  * `num_digits` = 5 real MNIST digits at their native 28 x 28: 3 of the
    target class (the label, uniform over 0-9) and 2 drawn with replacement
    from the other 9 classes, each a digit image drawn from the split's pool
    of that class. Top-left corners are uniform in [0, h - 28] x
    [0, w - 28], redrawn until no two digits overlap (corners closer than 28
    px on both axes count as overlap).
  * `num_noise` scribbles: 28 x 28 patterns drawn uniformly from a bank of
    `noise_bank_size` (two straight lines each, see `scribble`), at
    top-left corners u * (h - 56, w - 56) + 28, u ~ U(0, 1)^2. They are
    written over the digits ("ats", the reference order) or under them
    ("ips"); written means the brighter pixel wins, so ink is never erased.

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


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """A Megapixel MNIST layout (module docstring).

  Attributes:
    height, width: canvas size in pixels.
    num_digits: digits per scene; `num_target` of them are the label's.
    num_target: majority digits (the rest are of other classes).
    num_noise: scribbles per scene.
    noise_bank_size: distinct scribble patterns per dataset.
    noise_order: "ats" (scribbles over the digits) or "ips" (under).
  """
  height: int = 1500
  width: int = 1500
  num_digits: int = 5
  num_target: int = 3
  num_noise: int = 50
  noise_bank_size: int = 50
  noise_order: str = "ats"

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


def scribble(rng: np.random.Generator) -> np.ndarray:
  """uint8 (28, 28): two straight strokes, the reference's noise pattern.

  Each stroke is the line y = slope * x + offset with slope = tan(u * pi /
  2.5), u ~ U(0, 1) (0 to 72 degrees), through a random point of the
  pattern, about 2 px wide with soft edges like a pen stroke. With
  probability 1/3 the pattern is mirrored left to right, and its intensity
  is scaled by U(0.8, 1.0).
  """
  y, x = np.mgrid[:DIGIT_SIZE, :DIGIT_SIZE].astype(np.float32) + 0.5
  ink = np.zeros((DIGIT_SIZE, DIGIT_SIZE), np.float32)
  for _ in range(2):
    slope = np.tan(rng.uniform() * np.pi / 2.5)
    cy, cx = rng.uniform(0, DIGIT_SIZE, 2)
    # Distance of each pixel centre to the line through (cy, cx).
    distance = np.abs((y - cy) - slope * (x - cx)) / np.hypot(1.0, slope)
    ink = np.maximum(ink, np.clip(1.5 - distance, 0.0, 1.0))
  if rng.uniform() < 1 / 3:
    ink = ink[:, ::-1]
  return np.round(255 * rng.uniform(0.8, 1.0) * ink).astype(np.uint8)


def noise_bank(seed: int, size: int) -> np.ndarray:
  """uint8 (size, 28, 28): the dataset's scribble patterns."""
  rng = np.random.default_rng([seed, 1 << 20])
  return np.stack([scribble(rng) for _ in range(size)])


def digit_corners(rng: np.random.Generator, spec: SceneSpec) -> np.ndarray:
  """int (num_digits, 2) top-left corners (y, x) of non-overlapping digits."""
  corners = []
  for _ in range(_MAX_PLACEMENT_TRIES):
    corner = rng.integers(0, (spec.height - DIGIT_SIZE + 1,
                              spec.width - DIGIT_SIZE + 1))
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


def render_scene(spec: SceneSpec, rng: np.random.Generator,
                 pools: list[np.ndarray], bank: np.ndarray):
  """One scene and its annotations (module docstring).

  Args:
    spec: the layout.
    rng: the example's generator.
    pools: pools[c] is uint8 (n_c, 28, 28), the split's digits of class c.
    bank: uint8 (bank size, 28, 28) scribble patterns.

  Returns:
    (uint8 (height, width) canvas, classes (num_digits,), corners
    (num_digits, 2) of the digits as (y, x)).
  """
  classes = scene_digits(rng, spec)
  corners = digit_corners(rng, spec)
  digits = [pools[c][rng.integers(len(pools[c]))] for c in classes]
  scribbles = bank[rng.integers(len(bank), size=spec.num_noise)]
  scale = np.array([spec.height, spec.width]) - 2 * DIGIT_SIZE
  noise_corners = (rng.uniform(size=(spec.num_noise, 2)) * scale).astype(
      int) + DIGIT_SIZE
  layers = [(digits, corners), (scribbles, noise_corners)]
  if spec.noise_order == "ips":
    layers.reverse()
  canvas = np.zeros((spec.height, spec.width), np.uint8)
  for patterns, places in layers:
    for pattern, (top, left) in zip(patterns, places):
      window = canvas[top:top + DIGIT_SIZE, left:left + DIGIT_SIZE]
      np.maximum(window, pattern, out=window)
  return canvas, classes, corners


def make_example(spec: SceneSpec, seed: int, split_index: int, index: int,
                 pools: list[np.ndarray], bank: np.ndarray) -> dict:
  """One TFDS example: grayscale PNG, the four labels and digit objects."""
  canvas, classes, corners = render_scene(
      spec, drawing.example_rng(seed, split_index, index), pools, bank)
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
