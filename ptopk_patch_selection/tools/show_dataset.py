# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""Writes a PNG grid of examples of a built dataset, with labels and boxes.

  python -m ptopk_patch_selection.tools.show_dataset \
    --dataset=synthetic_traffic_signs/textures --out=/tmp/signs.png

Object boxes (synthetic datasets) are drawn green for the objects that decide
the label (`is_target`) and yellow for the others.
"""

import io

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageDraw
import tensorflow_datasets as tfds

# Imported to register the project's TFDS builders.
from ptopk_patch_selection import datasets  # pylint: disable=unused-import
from ptopk_patch_selection import locations
from ptopk_patch_selection.datasets import drawing

_DATASET = flags.DEFINE_string("dataset", "synthetic_traffic_signs/textures",
                               "TFDS name[/config].")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Built datasets.")
_SPLIT = flags.DEFINE_string("split", "train", "Split to show.")
_OUT = flags.DEFINE_string("out", "examples.png", "Output PNG.")
_NUM = flags.DEFINE_integer("num", 12, "Number of examples.")
_COLUMNS = flags.DEFINE_integer("columns", 4, "Grid columns.")
_TILE = flags.DEFINE_integer("tile", 384, "Width of one tile in pixels.")


def render_example(example, label_names, tile: int) -> Image.Image:
  """One tile: the image scaled to `tile` wide, boxes and the label."""
  image = Image.open(io.BytesIO(example["image"])).convert("RGB")
  scale = tile / image.width
  image = image.resize((tile, int(round(image.height * scale))),
                       Image.Resampling.BILINEAR)
  draw = ImageDraw.Draw(image)
  objects = example.get("objects", {"bbox": [], "is_target": []})
  for box, target in zip(objects["bbox"], objects["is_target"]):
    y0, x0, y1, x1 = np.asarray(box) * ([image.height, image.width] * 2)
    draw.rectangle((x0 - 2, y0 - 2, x1 + 2, y1 + 2),
                   outline=(0, 230, 0) if target else (255, 220, 0), width=2)
  label = label_names[int(example["label"])]
  draw.rectangle((0, 0, tile, 22), fill=(0, 0, 0))
  draw.text((4, 2), label, font=drawing.font(16), fill=(255, 255, 255))
  return image


def make_grid(name: str, data_dir: str, split: str, num: int, columns: int,
              tile: int) -> Image.Image:
  """A grid of `num` examples of a split, drawn with a fixed seed."""
  builder = tfds.builder(name, data_dir=locations.resolve(data_dir))
  source = builder.as_data_source(
      split=split, decoders={"image": tfds.decode.SkipDecoding()})
  label_names = builder.info.features["label"].names
  indices = np.random.default_rng(0).choice(len(source), min(num, len(source)),
                                            replace=False)
  tiles = [render_example(source[int(i)], label_names, tile) for i in indices]
  rows = -(-len(tiles) // columns)
  height = max(t.height for t in tiles)
  grid = Image.new("RGB", (columns * tile, rows * height), (255, 255, 255))
  for i, t in enumerate(tiles):
    grid.paste(t, ((i % columns) * tile, (i // columns) * height))
  return grid


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  grid = make_grid(_DATASET.value, _DATA_DIR.value, _SPLIT.value, _NUM.value,
                   _COLUMNS.value, _TILE.value)
  grid.save(_OUT.value)
  print(f"Wrote {_OUT.value}.")


if __name__ == "__main__":
  app.run(main)
