# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""Where a trained patch selector's test errors come from.

  python -m benchmarks.selection_errors --workdir=DIR

Reads DIR/config.json and its latest checkpoint and evaluates the eval split
with the evaluation's selection. For each example it counts the target objects (e.g.
Megapixel MNIST's majority digits) and the other objects that lie whole
inside a selected patch, and prints right / wrong per (targets, others)
count: wrong answers with every object in view are the reader's or the
aggregator's, wrong answers with a target out of view are the selection's.
It also prints how many selected slots hold at least one whole object
(the rest show scribbles, empty canvas or cut objects).
"""

import collections

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks import common
from ptopk_patch_selection import console
from ptopk_patch_selection import errors
from ptopk_patch_selection import train
from ptopk_patch_selection import workdir_files

# allow_override: tests import this module beside ptopk_patch_selection's
# visualize, which also defines --workdir.
_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.",
                               allow_override=True)
flags.mark_flag_as_required("workdir")


def whole_inside(boxes: np.ndarray, top: np.ndarray, left: np.ndarray,
                 patch_size: int, image_size: tuple[int, int]) -> np.ndarray:
  """(b, m, k) bool: object j lies whole inside selected patch s.

  Args:
    boxes: (b, m, 4) normalised (ymin, xmin, ymax, xmax).
    top, left: (b, k) pixel corners of the selected patches.
    patch_size: patch side in pixels.
    image_size: (h, w) in pixels.
  """
  h, w = image_size
  y0, x0 = boxes[..., 0:1] * h, boxes[..., 1:2] * w  # (b, m, 1)
  y1, x1 = boxes[..., 2:3] * h, boxes[..., 3:4] * w
  top, left = top[:, None], left[:, None]  # (b, 1, k)
  return ((y0 >= top) & (y1 <= top + patch_size) &
          (x0 >= left) & (x1 <= left + patch_size))


def tally(inside: np.ndarray, batch: dict[str, np.ndarray],
          right: np.ndarray, counts: collections.Counter,
          slots: collections.Counter) -> None:
  """Adds one batch's valid rows to `counts` ((targets, others, right) ->
  examples) and `slots` (slots holding a whole object -> examples)."""
  whole = inside.any(-1) & batch["box_mask"]  # (b, m)
  targets = (whole & batch["is_target"]).sum(-1)
  others = (whole & ~batch["is_target"]).sum(-1)
  holding = (inside & batch["box_mask"][..., None]).any(1).sum(-1)  # (b,)
  for i in np.flatnonzero(batch["mask"]):
    counts[(int(targets[i]), int(others[i]), bool(right[i]))] += 1
    slots[int(holding[i])] += 1


def table(counts: collections.Counter) -> str:
  rows = []
  for targets, others in sorted({key[:2] for key in counts}, reverse=True):
    right, wrong = counts[(targets, others, True)], counts[(targets, others,
                                                            False)]
    rows.append([targets, others, right, wrong, wrong / (right + wrong)])
  return common.markdown_table(
      ["targets whole", "others whole", "right", "wrong", "error rate"], rows)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  console.quiet_library_logs()
  workdir = _WORKDIR.value
  config = workdir_files.load_config(workdir)
  pipeline, trainer, state = train.restore_trained(workdir, config)
  if trainer.grid is None or not pipeline.has_objects:
    raise errors.ConfigError(
        f"{workdir}: needs a model that selects patches (model.name="
        f"{config.model.name!r}) and a dataset with object boxes.")
  sigma = train.eval_sigma(config, state.step)

  @jax.jit
  def evaluate(images, rngs):
    logits, aux = trainer.model.apply(
        {"params": state.params, "batch_stats": state.batch_stats}, images,
        train=False, sigma=sigma, rngs=rngs)
    return logits.argmax(-1), trainer.grid.corners(aux.indices)

  counts, slots = collections.Counter(), collections.Counter()
  for index, batch in enumerate(pipeline.eval_batches()):
    predictions, (top, left) = jax.device_get(evaluate(
        batch["image"], train.step_rngs(config, index, stream=1)))
    inside = whole_inside(batch["boxes"], top, left, trainer.grid.patch_size,
                          trainer.grid.image_size)
    tally(inside, batch, predictions == batch["label"], counts, slots)
  total = sum(counts.values())
  accuracy = sum(n for key, n in counts.items() if key[2]) / total
  print(f"{workdir}, step {int(state.step)}: accuracy {accuracy:.3f} on "
        f"{total} examples")
  print(table(counts))
  print("selected slots holding a whole object: " + ", ".join(
      f"{n} slots in {slots[n]}" for n in sorted(slots)))


if __name__ == "__main__":
  app.run(main)
