# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""PIL drawing helpers shared by the procedural generators.

Everything here is pure PIL/numpy (no TensorFlow), so the generators can run in
spawned worker processes cheaply. Small elements (signs, ball numbers) are
drawn `SUPERSAMPLE` times larger and downsampled, which anti-aliases them like
a camera would. Text uses PIL's bundled scalable font
(`ImageFont.load_default(size=...)`, Pillow >= 10.1), so no system font is
needed.
"""

import functools
import io

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

SUPERSAMPLE = 4


def example_rng(seed: int, split_index: int, index: int) -> np.random.Generator:
  """The random generator of one generated example."""
  return np.random.default_rng([seed, split_index, index])


@functools.lru_cache(maxsize=256)
def font(size: int) -> ImageFont.FreeTypeFont:
  """The bundled scalable font at `size` pixels."""
  return ImageFont.load_default(size=max(1, int(size)))


def draw_centered_text(draw: ImageDraw.ImageDraw, center, text: str,
                       height: float, fill) -> None:
  """Draws `text` with its ink box centred on `center`, about `height` tall."""
  # The em size is ~1.4x the height of digits in the bundled font.
  size = int(round(height * 1.4))
  draw.text(center, text, font=font(size), fill=fill, anchor="mm")


def rgba_sprite(diameter: float, aspect: float, draw_fn) -> Image.Image:
  """Renders a supersampled RGBA sprite and downsamples it.

  Args:
    diameter: final height in pixels.
    aspect: final width / height.
    draw_fn: called as draw_fn(draw, size) on an RGBA canvas of side `size`
      (the supersampled square); draws the sprite centred in it.

  Returns:
    An RGBA image of about (diameter * aspect, diameter) pixels.
  """
  size = int(round(diameter * SUPERSAMPLE))
  canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
  draw_fn(ImageDraw.Draw(canvas), size)
  out_w = max(1, int(round(diameter * aspect)))
  out_h = max(1, int(round(diameter)))
  return canvas.resize((out_w, out_h), Image.Resampling.LANCZOS)


def noise_texture(rng: np.random.Generator, size, cell: int,
                  amplitude: float) -> np.ndarray:
  """Smooth random texture: uniform noise on a coarse grid, upsampled.

  Args:
    rng: random generator.
    size: (height, width) of the output.
    cell: size in pixels of one coarse noise cell.
    amplitude: values lie in [-amplitude, amplitude].

  Returns:
    float32 (height, width, 1).
  """
  h, w = size
  coarse = rng.integers(0, 256, (h // cell + 2, w // cell + 2), np.uint8)
  up = Image.fromarray(coarse).resize(
      ((w // cell + 2) * cell, (h // cell + 2) * cell),
      Image.Resampling.BILINEAR)
  arr = np.asarray(up, np.float32)[:h, :w, None]
  return (arr / 127.5 - 1.0) * amplitude


def disc_mask(shape: tuple[int, int], centre: tuple[float, float],
              radius: float) -> np.ndarray:
  """bool (h, w): pixels whose centre lies within `radius` of (cy, cx)."""
  y, x = np.mgrid[:shape[0], :shape[1]] + 0.5
  return (y - centre[0]) ** 2 + (x - centre[1]) ** 2 < radius ** 2


def add_noise(image: Image.Image, rng: np.random.Generator,
              amplitude: int) -> Image.Image:
  """Adds fine grey grain noise, uniform in [-amplitude, amplitude]."""
  w, h = image.size
  noise = rng.integers(-amplitude, amplitude + 1, (h, w, 1), np.int16)
  out = np.asarray(image, np.int16) + noise
  return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
  """JPEG bytes of an RGB image."""
  buf = io.BytesIO()
  image.save(buf, format="JPEG", quality=quality)
  return buf.getvalue()


def random_color(rng: np.random.Generator, low: int = 0,
                 high: int = 256) -> tuple[int, int, int]:
  """A uniformly random RGB colour with channels in [low, high)."""
  return tuple(int(c) for c in rng.integers(low, high, 3))


def example(image: Image.Image, label: int, objects: list[dict]) -> dict:
  """A generated TFDS example: JPEG bytes, label, per-object box/number/target.

  Each object is a dict with "bbox" (normalised ymin, xmin, ymax, xmax),
  "number" and "is_target".
  """
  return {
      "image": encode_jpeg(image),
      "label": label,
      "objects": {
          "bbox": np.array([o["bbox"] for o in objects], np.float32),
          "number": np.array([o["number"] for o in objects], np.int32),
          "is_target": np.array([o["is_target"] for o in objects], bool),
      },
  }
