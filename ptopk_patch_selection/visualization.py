# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Pictures of a selection: boxes, score heat maps, patch strips, part images.

Pure numpy / PIL functions that return uint8 RGB arrays (h, w, 3), ready for
`writer.write_images` (CLU) or `save_png`. Float images are mapped from
`value_range` to [0, 255] and clipped (the input pipeline gives [0, 1], or
[-1, 1] for CUB); uint8 images are taken as they are.

Patch geometry comes from a `patches.PatchGrid`: slot r of `indices` (k,) is
drawn as the box of its candidate patch, clipped to the image, labelled r
(slots are in raster order of the grid).

  figures = [selection_figure(images[i], aux.scores[i], aux.indices[i],
                              aux.patches[i], grid) for i in range(4)]
  writer.write_images(step, {"eval_selection": selection_grid(figures)[None]})

NTS-Net's selection is drawn as its part images (`parts_figure`);
`selection_picture` draws an eval batch of either model from the arrays the
model's output gives (`pictures()` of its aux output).
"""

from collections.abc import Sequence
import os

import matplotlib
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

PATCH_COLOR = (255, 40, 40)
OBJECT_COLOR = (0, 220, 0)
BACKGROUND_COLOR = (255, 255, 255)
GAP = 4  # Pixels between the panels of a figure.

ValueRange = tuple[float, float]


def to_rgb_uint8(image, value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """(h, w), (h, w, 1) or (h, w, c >= 3) image -> uint8 (h, w, 3).

  Only the first 3 channels are kept; one channel is repeated to grey.
  """
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] == 2:
    raise ValueError(f"Expected an image (h, w), (h, w, 1) or (h, w, c >= 3),"
                     f" got shape {image.shape}.")
  image = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image, 3, -1)
  if image.dtype == np.uint8:
    return np.ascontiguousarray(image)
  low, high = value_range
  scaled = (image.astype(np.float32) - low) / (high - low)
  return np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def _default_line_width(image: np.ndarray) -> int:
  return max(1, round(min(image.shape[:2]) / 200))


def _text_color(color) -> tuple[int, int, int]:
  """Black or white, whichever reads better on `color`."""
  luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
  return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def draw_patch_boxes(image, indices, grid, color=PATCH_COLOR,
                     labels: bool = True, line_width: int | None = None,
                     value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """The image with the boxes of the selected patches.

  Args:
    image: (h, w, c) float or uint8, h, w = grid.image_size.
    indices: (k,) flat indices i * W' + j into the grid.
    grid: the `patches.PatchGrid` the indices refer to.
    color: RGB colour of the boxes.
    labels: write the slot number r in the top-left corner of box r.
    line_width: in pixels; default about min(h, w) / 200.
    value_range: range of a float image.

  Returns:
    uint8 (h, w, 3); boxes of patches that overhang the image are clipped.
  """
  canvas = to_rgb_uint8(image, value_range)
  h, w = canvas.shape[:2]
  if (h, w) != tuple(grid.image_size):
    raise ValueError(f"Image of size {(h, w)} does not match the grid's "
                     f"image_size {grid.image_size}.")
  line_width = line_width or _default_line_width(canvas)
  tops, lefts = (np.asarray(c).reshape(-1)
                 for c in grid.corners(np.asarray(indices)))
  p = grid.patch_size
  font = ImageFont.load_default(size=int(np.clip(p // 3, 8, 48)))
  picture = Image.fromarray(canvas)
  draw = ImageDraw.Draw(picture)
  for slot, (top, left) in enumerate(zip(tops, lefts)):
    x0, y0 = max(int(left), 0), max(int(top), 0)
    x1, y1 = min(int(left) + p - 1, w - 1), min(int(top) + p - 1, h - 1)
    draw.rectangle((x0, y0, x1, y1), outline=tuple(color), width=line_width)
    if labels:
      text = str(slot)
      _, _, text_w, text_h = draw.textbbox((0, 0), text, font=font)
      draw.rectangle((x0, y0, x0 + text_w + 2, y0 + text_h + 2),
                     fill=tuple(color))
      draw.text((x0 + 1, y0 + 1), text, font=font, fill=_text_color(color))
  return np.asarray(picture)


def draw_object_boxes(image, boxes, mask=None, color=OBJECT_COLOR,
                      line_width: int | None = None,
                      value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """The image with ground-truth object boxes.

  Args:
    image: (h, w, c) float or uint8.
    boxes: (m, 4) normalised (ymin, xmin, ymax, xmax) in [0, 1].
    mask: (m,) bool, False for padding boxes; None: all boxes are real.
    color: RGB colour of the boxes.
    line_width: in pixels; default about min(h, w) / 200.
    value_range: range of a float image.

  Returns:
    uint8 (h, w, 3).
  """
  canvas = to_rgb_uint8(image, value_range)
  h, w = canvas.shape[:2]
  line_width = line_width or _default_line_width(canvas)
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  mask = np.ones(len(boxes), bool) if mask is None else np.asarray(mask, bool)
  picture = Image.fromarray(canvas)
  draw = ImageDraw.Draw(picture)
  for (ymin, xmin, ymax, xmax), real in zip(boxes, mask):
    if real:
      x0, x1 = (int(np.clip(round(v * w), 0, w - 1)) for v in (xmin, xmax))
      y0, y1 = (int(np.clip(round(v * h), 0, h - 1)) for v in (ymin, ymax))
      draw.rectangle((x0, y0, x1, y1), outline=tuple(color), width=line_width)
  return np.asarray(picture)


def score_heatmap(image, scores, alpha: float = 0.5, cmap: str = "inferno",
                  value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """The score map as a colour heat map over the image.

  Args:
    image: (h, w, c) float or uint8.
    scores: (H', W') scores, min-max normalised here for display (a constant
      map shows as the lowest colour).
    alpha: opacity of the heat map.
    cmap: a matplotlib colour map name.
    value_range: range of a float image.

  Returns:
    uint8 (h, w, 3): each grid cell covers its share of the image (nearest
    neighbour upsampling).
  """
  base = to_rgb_uint8(image, value_range).astype(np.float32)
  scores = np.asarray(scores, np.float32)
  if scores.ndim != 2:
    raise ValueError(f"scores must be (H', W'), got shape {scores.shape}.")
  low, high = scores.min(), scores.max()
  normalized = ((scores - low) / (high - low) if high > low else
                np.zeros_like(scores))
  h, w = base.shape[:2]
  rows = np.arange(h) * scores.shape[0] // h
  cols = np.arange(w) * scores.shape[1] // w
  heat = matplotlib.colormaps[cmap](normalized[rows][:, cols])[..., :3] * 255
  return np.round((1 - alpha) * base + alpha * heat).astype(np.uint8)


def patch_strip(patches, separator: int = 2,
                separator_color=BACKGROUND_COLOR,
                value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """(k, p, p, c) patches side by side -> uint8 (p, k p + (k - 1) sep, 3)."""
  patches = np.asarray(patches)
  if patches.ndim != 4:
    raise ValueError(f"patches must be (k, p, p, c), got {patches.shape}.")
  k, ph, pw = patches.shape[:3]
  strip = np.empty((ph, k * pw + (k - 1) * separator, 3), np.uint8)
  strip[:] = separator_color
  for slot, patch in enumerate(patches):
    left = slot * (pw + separator)
    strip[:, left:left + pw] = to_rgb_uint8(patch, value_range)
  return strip


def _stack(arrays, axis: int, gap: int) -> np.ndarray:
  """Uint8 (h, w, 3) arrays placed along axis 0 or 1, `gap` pixels apart."""
  across = 1 - axis
  shape = [0, 0, 3]
  shape[axis] = sum(a.shape[axis] for a in arrays) + gap * (len(arrays) - 1)
  shape[across] = max(a.shape[across] for a in arrays)
  canvas = np.empty(shape, np.uint8)
  canvas[:] = BACKGROUND_COLOR
  offset = 0
  for array in arrays:
    where = [slice(None), slice(None)]
    where[axis] = slice(offset, offset + array.shape[axis])
    where[across] = slice(0, array.shape[across])
    canvas[tuple(where)] = array
    offset += array.shape[axis] + gap
  return canvas


def _resize_to_width(array: np.ndarray, width: int) -> np.ndarray:
  """Resizes uint8 (h, w, 3) to `width`, keeping the aspect ratio."""
  h, w = array.shape[:2]
  if w == width:
    return array
  height = max(1, round(h * width / w))
  resample = (Image.Resampling.NEAREST if width > w else
              Image.Resampling.LANCZOS)
  return np.asarray(Image.fromarray(array).resize((width, height), resample))


def _title_band(title: str, width: int) -> np.ndarray:
  """A white band `width` wide with the title in black."""
  size = max(10, min(width // 40, 32))
  band = Image.new("RGB", (width, int(size * 1.5)), BACKGROUND_COLOR)
  ImageDraw.Draw(band).text((GAP, size // 4), title,
                            font=ImageFont.load_default(size=size),
                            fill=(0, 0, 0))
  return np.asarray(band)


def selection_figure(image, scores, indices, patches, grid,
                     title: str | None = None, object_boxes=None,
                     width: int | None = None,
                     value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """One example: image with boxes | score heat map, the patches below.

  Args:
    image: (h, w, c) full-resolution image.
    scores: (H', W') scorer output (raw or normalised).
    indices: (k,) selected flat indices.
    patches: (k, p, p, c) the extracted patches (scaled to the figure's width
      below the two image panels).
    grid: the `patches.PatchGrid`.
    title: written above the figure.
    object_boxes: optional ground truth (boxes, mask): boxes (m, 4)
      normalised (ymin, xmin, ymax, xmax), mask (m,) bool, False for padding;
      drawn in OBJECT_COLOR under the patch boxes.
    width: resize the figure to this width (keeps the aspect ratio).
    value_range: range of float images and patches.

  Returns:
    uint8 (height, width, 3).
  """
  boxed = to_rgb_uint8(image, value_range)
  if object_boxes is not None:
    boxed = draw_object_boxes(boxed, *object_boxes)
  boxed = draw_patch_boxes(boxed, indices, grid)
  top = _stack([boxed, score_heatmap(image, scores, value_range=value_range)],
               axis=1, gap=GAP)
  strip = _resize_to_width(patch_strip(patches, value_range=value_range),
                           top.shape[1])
  figure = _stack([top, strip], axis=0, gap=GAP)
  if width is not None:
    figure = _resize_to_width(figure, width)
  if title is not None:
    figure = _stack([_title_band(title, figure.shape[1]), figure], axis=0,
                    gap=0)
  return figure


def parts_figure(image, parts, title: str | None = None, object_boxes=None,
                 value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """One NTS-Net example: the image, its k part images stacked beside it.

  Args:
    image: (h, w, c) full-resolution image.
    parts: (k, P, P, c) part images, in the image's value range.
    title: written above the figure.
    object_boxes: optional ground truth (boxes, mask), as `selection_figure`.
    value_range: range of float images and parts.

  Returns:
    uint8 (max(h, k P + (k - 1) GAP) [+ title band], w + GAP + P, 3): the
    parts are drawn pixel for pixel, slot 0 on top.
  """
  boxed = to_rgb_uint8(image, value_range)
  if object_boxes is not None:
    boxed = draw_object_boxes(boxed, *object_boxes)
  column = _stack([to_rgb_uint8(part, value_range) for part in parts],
                  axis=0, gap=GAP)
  figure = _stack([boxed, column], axis=1, gap=GAP)
  if title is not None:
    figure = _stack([_title_band(title, figure.shape[1]), figure], axis=0,
                    gap=0)
  return figure


def selection_grid(figures: Sequence[np.ndarray],
                   gap: int = 3 * GAP) -> np.ndarray:
  """uint8 figures (h_i, w_i, 3), e.g. `selection_figure`s, stacked vertically.

  Narrower figures are padded on the right with the background colour.
  """
  if not figures:
    raise ValueError("selection_grid needs at least one figure.")
  return _stack([to_rgb_uint8(figure) for figure in figures], axis=0,
                gap=gap)


def save_png(array, path: str | os.PathLike) -> None:
  """Writes an image (uint8, or float in [0, 1]) as a PNG, making folders."""
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  Image.fromarray(to_rgb_uint8(array)).save(path, format="PNG")


def selection_picture(pictures: dict[str, np.ndarray], grid=None,
                      value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """uint8 (H, W, 3): an eval batch's images with what their model selected.

  Args:
    pictures: what the eval step returns for n images: "image" (n, h, w, c),
      "label" and "prediction" (n,), optionally "boxes" (n, m, 4) and
      "box_mask" (n, m), and the model's own arrays: "parts" (n, k, P, P, c)
      (NTS-Net: a `parts_figure` each) or "scores" (n, H', W'), "indices"
      (n, k) and "patches" (n, k, p, p, c) (PatchNet: a `selection_figure`).
    grid: the model's `patches.PatchGrid`; needed for "indices".
    value_range: range of the float images ((-1, 1) for CUB).
  """
  figures = []
  for i, image in enumerate(pictures["image"]):
    objects = ((pictures["boxes"][i], pictures["box_mask"][i])
               if "boxes" in pictures else None)
    title = (f"label {pictures['label'][i]}, "
             f"predicted {pictures['prediction'][i]}")
    if "parts" in pictures:
      figures.append(parts_figure(image, pictures["parts"][i], title=title,
                                  object_boxes=objects,
                                  value_range=value_range))
    else:
      figures.append(selection_figure(
          image, pictures["scores"][i], pictures["indices"][i],
          pictures["patches"][i], grid, object_boxes=objects, title=title,
          value_range=value_range))
  return selection_grid(figures)
