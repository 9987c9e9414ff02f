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


def count(workdir: str) -> tuple[int, collections.Counter,
                                  collections.Counter]:
  """Evaluates a finished run (`Trainer.predict`, as its evaluations do):
  its step, `counts` and `slots` (`tally`) over the eval split."""
  config = workdir_files.load_config(workdir)
  pipeline, trainer, state = train.restore_trained(workdir, config)
  if trainer.grid is None or not pipeline.has_objects:
    raise errors.ConfigError(
        f"{workdir}: needs a model that selects patches (model.name="
        f"{config.model.name!r}) and a dataset with object boxes.")

  @jax.jit
  def evaluate(images, batch_index):
    logits, aux = trainer.predict(state, images, batch_index)
    return logits.argmax(-1), trainer.grid.corners(aux.indices)

  counts, slots = collections.Counter(), collections.Counter()
  for index, batch in enumerate(pipeline.eval_batches()):
    predictions, (top, left) = jax.device_get(evaluate(batch["image"],
                                                       index))
    inside = whole_inside(batch["boxes"], top, left, trainer.grid.patch_size,
                          trainer.grid.image_size)
    tally(inside, batch, predictions == batch["label"], counts, slots)
  return int(state.step), counts, slots


def accuracy(counts: collections.Counter) -> float:
  """The fraction right among all counted examples."""
  return sum(n for key, n in counts.items() if key[2]) / sum(counts.values())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  console.quiet_library_logs()
  workdir = _WORKDIR.value
  step, counts, slots = count(workdir)
  print(f"{workdir}, step {step}: accuracy {accuracy(counts):.3f} on "
        f"{sum(counts.values())} examples")
  print(table(counts))
  print("selected slots holding a whole object: " + ", ".join(
      f"{n} slots in {slots[n]}" for n in sorted(slots)))


if __name__ == "__main__":
  app.run(main)
