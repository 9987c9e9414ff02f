# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Texture patches: a generic pretraining task for a patch reader (numpy only).

Each example is a square patch of smooth coloured noise with one grey disc
that carries one of 8 textures (the label):

  0 flat            the disc filled with the mean of its two greys
  1-4 stripes       at 0, 45, 90 or 135 degrees (image coordinates: x
                    right, y down, so 45 runs from top left to bottom right)
  5 checkerboard    squares along the axes
  6 diamonds        a checkerboard turned 45 degrees
  7 dots            a square lattice of round dots

The texture's period is drawn from `PERIODS` px (stripes and squares are half
a period wide), its phase at random, its two greys at least `MIN_CONTRAST`
apart; the disc's radius is 0.15-0.45 of the patch side. It is not the
embedded default's task (no scenes, no ring signs, other classes, several
periods and orientations): it teaches a reader to tell fine textures apart,
the way ImageNet pretraining teaches the CUB reader to see
(docs/learning.md). Examples are pure functions of (seed, split, index) and
labels cycle with the index (balanced classes).
"""

import numpy as np

from ptopk_patch_selection.datasets import drawing

CLASS_NAMES = ("flat", "stripes_0", "stripes_45", "stripes_90",
               "stripes_135", "checkerboard", "diamonds", "dots")
PERIODS = (3, 4, 5, 6, 8)  # px
MIN_CONTRAST = 60  # grey levels between a texture's dark and light
_RADIUS = (0.15, 0.45)  # disc radius / patch side
_STRIPE_ANGLES = {1: 0.0, 2: 45.0, 3: 90.0, 4: 135.0}


def texture(label: int, size: int, period: int, phase: np.ndarray,
            dark: int, light: int) -> np.ndarray:
  """uint8 (size, size) texture of class `label` (module docstring).

  Args:
    label: class index into CLASS_NAMES.
    size: side in pixels.
    period: the pattern's period in pixels.
    phase: (2,) offsets in pixels, added to the (y, x) coordinates.
    dark, light: the two grey levels.
  """
  y, x = np.mgrid[:size, :size].astype(np.float32)
  y, x = y + phase[0], x + phase[1]
  half = period / 2
  if label == 0:
    return np.full((size, size), (dark + light + 1) // 2, np.uint8)
  if label in _STRIPE_ANGLES:
    angle = np.deg2rad(_STRIPE_ANGLES[label])
    # Stripes run along `angle` from the x axis towards the y axis (down);
    # the pattern varies across it.
    across = y * np.cos(angle) - x * np.sin(angle)
    on = np.floor(across / half) % 2
  elif label == 5:
    on = (np.floor(y / half) + np.floor(x / half)) % 2
  elif label == 6:
    u, v = (x + y) / np.sqrt(2), (x - y) / np.sqrt(2)
    on = (np.floor(u / half) + np.floor(v / half)) % 2
  elif label == 7:
    dy = (y % period) - half
    dx = (x % period) - half
    on = (dy ** 2 + dx ** 2 < (0.35 * period) ** 2).astype(np.float32)
  else:
    raise ValueError(f"label {label} is not in 0..{len(CLASS_NAMES) - 1}")
  return np.where(on == 1, dark, light).astype(np.uint8)


def texture_patch(rng: np.random.Generator, label: int,
                  size: int) -> np.ndarray:
  """uint8 (size, size, 3): noise background with a disc of `label`."""
  base = rng.integers(40, 216, 3).astype(np.float32)
  cell = int(rng.integers(max(2, size // 12), max(3, size // 4) + 1))
  noise = np.concatenate(
      [drawing.noise_texture(rng, (size, size), cell, 40.0) for _ in "rgb"],
      axis=-1)
  image = base + noise
  dark = int(rng.integers(0, 256 - MIN_CONTRAST))
  light = int(rng.integers(dark + MIN_CONTRAST, 256))
  pattern = texture(label, size, int(rng.choice(PERIODS)),
                    rng.uniform(0, 16, 2), dark, light)
  radius = rng.uniform(*_RADIUS) * size
  cy, cx = rng.uniform(radius, size - radius, 2)
  inside = drawing.disc_mask((size, size), (cy, cx), radius)
  image[inside] = pattern[inside, None]
  return np.clip(image, 0, 255).astype(np.uint8)


def example(seed: int, split: int, index: int,
            size: int) -> tuple[np.ndarray, int]:
  """(uint8 (size, size, 3) patch, label) of example `index` of `split`."""
  label = index % len(CLASS_NAMES)
  return texture_patch(drawing.example_rng(seed, split, index), label,
                       size), label


def batch(seed: int, split: int, indices, size: int):
  """uint8 patches (n, size, size, 3) and int32 labels (n,) of `indices`."""
  patches, labels = zip(*(example(seed, split, i, size) for i in indices))
  return np.stack(patches), np.array(labels, np.int32)
