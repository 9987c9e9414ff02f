# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Pictures of what a trained model selects, from its latest checkpoint.

  python -m ptopk_patch_selection.visualize --workdir=DIR [--num_images=8]

Reads DIR/config.json and the latest checkpoint, runs the evaluation model
(hard Top-K) on the first eval images and writes, per image, the image with
the chosen patches, the score map and the patches (PatchNet) or the image and
its part images (NTS-Net) to DIR/pictures/visualize_<i>.png (or --output_dir).
"""

import os

from absl import app
from absl import flags
import jax

from ptopk_patch_selection import cli
from ptopk_patch_selection import console
from ptopk_patch_selection import errors
from ptopk_patch_selection import train
from ptopk_patch_selection import visualization
from ptopk_patch_selection import workdir_files

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "Eval images to draw.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Where the PNGs go (default DIR/pictures).")
flags.mark_flag_as_required("workdir")


def write_pictures(workdir: str, num_images: int,
                   output_dir: str | None = None) -> list[str]:
  """Draws the first eval images' selections; returns the PNG paths."""
  config = workdir_files.load_config(workdir)
  config.num_image_summaries = num_images
  config.eval_batch_size = num_images * jax.device_count()
  pipeline, trainer, state = train.restore_trained(workdir, config)
  _, pictures = trainer.eval_step(
      state, trainer.global_batch(pipeline.eval_batch(0)), 0,
      with_pictures=True)
  pictures = jax.device_get(pictures)
  if not pictures:
    raise errors.ConfigError(f"model.name={config.model.name!r} selects "
                             "nothing to draw: use the workdir of a model that "
                             "selects patches or parts.")
  output_dir = output_dir or os.path.join(workdir,
                                          workdir_files.PICTURES_FOLDER)
  paths = []
  for i in range(len(pictures["image"])):
    single = {key: value[i:i + 1] for key, value in pictures.items()}
    paths.append(os.path.join(output_dir, f"visualize_{i}.png"))
    visualization.save_png(
        visualization.selection_picture(single, trainer.grid,
                                        pipeline.value_range), paths[-1])
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  console.quiet_library_logs()
  for path in write_pictures(_WORKDIR.value, _NUM_IMAGES.value,
                             _OUTPUT_DIR.value):
    print(path)


if __name__ == "__main__":
  cli.run(main)
