# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Evaluation throughput: pictures from one batch, sums read once.

`train.Trainer.evaluate` asks the eval step for pictures on the first batch
only (cut to `config.num_image_summaries` rows on the devices) and keeps the
per-batch sums on the devices until the last batch is queued. The baseline,
in the same process and on the same batches, is the loop it replaced: the
pictures of every batch come back from the step (gathered over the devices)
and the host waits for each batch's sums before reading the next batch.

Config: configs/megapixel_mnist.py (paper scale: 1500 px images, K=10 patches
of 50 px, ResNet-18) on the first `--batches` test batches of
megapixel_mnist/paper, or `--variant=cpu` (512 px) on megapixel_mnist/cpu;
randomly initialised weights (the cost does not depend on them). Build the
dataset first:

  python -m ptopk_patch_selection.tools.build_dataset \
      --dataset=megapixel_mnist/paper
  python -m benchmarks.eval_speed

writes benchmarks/results/eval_speed.{json,md}.
"""

import itertools
import time

from absl import app
from absl import flags
import jax
from jax.sharding import Mesh
import numpy as np

from benchmarks import common
from configs import megapixel_mnist
from ptopk_patch_selection import console
from ptopk_patch_selection import input_pipeline
from ptopk_patch_selection import train

_VARIANT = flags.DEFINE_string("variant", "", "configs/megapixel_mnist.py "
                               "variant: '' (paper scale) or 'cpu'.")
_BATCHES = flags.DEFINE_integer("batches", 10, "Eval batches per pass.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes per loop.",
                                allow_override=True)  # as topk_op's
_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Built datasets.")


class _FirstBatches:
  """The first `count` eval batches of a pipeline, read into memory once."""

  def __init__(self, pipeline: input_pipeline.InputPipeline, count: int):
    self._batches = list(itertools.islice(pipeline.eval_batches(), count))

  def eval_batches(self):
    return iter(self._batches)


def per_batch_pictures_loop(trainer: train.Trainer, state, pipeline) -> None:
  """The baseline: pictures from every batch, each batch's sums waited on."""
  for batch_index, batch in enumerate(pipeline.eval_batches()):
    sums, pictures = trainer.eval_step(state, trainer.global_batch(batch),
                                       batch_index, with_pictures=True)
    jax.device_get(sums)
    if batch_index == 0:
      jax.device_get(pictures)


def measure(variant: str, batches: int, repeats: int, data_dir: str) -> dict:
  """Examples per second of both loops, alternated `repeats` times."""
  config = megapixel_mnist.get_config(variant)
  config.dataset.data_dir = data_dir
  config.model.pretrained_checkpoint = ""
  pipeline = input_pipeline.create_datasets(config)
  trainer = train.Trainer(config, pipeline.num_classes,
                          Mesh(np.array(jax.devices()), (train.DATA_AXIS,)),
                          pipeline.channels)
  state = trainer.create_state()
  first = _FirstBatches(pipeline, batches)
  loops = {"pictures from every batch, sums read per batch (before)":
               lambda: per_batch_pictures_loop(trainer, state, first),
           "Trainer.evaluate (after)":
               lambda: trainer.evaluate(state, first)}
  for loop in loops.values():
    loop()  # compiles both eval steps
  seconds = {name: [] for name in loops}
  for _ in range(repeats):
    for name, loop in loops.items():
      start = time.perf_counter()
      loop()
      seconds[name].append(time.perf_counter() - start)
  examples = batches * config.eval_batch_size
  return {"config": f"configs/megapixel_mnist.py:{variant}",
          "image_size": list(config.dataset.image_size),
          "eval_batch_size": config.eval_batch_size, "batches": batches,
          "examples_per_second": {name: examples / float(np.median(times))
                                  for name, times in seconds.items()}}


def main(argv):
  del argv
  console.quiet_library_logs()
  result = measure(_VARIANT.value, _BATCHES.value, _REPEATS.value,
                   _DATA_DIR.value)
  throughput = result["examples_per_second"]
  before, after = throughput.values()
  machine = common.machine_description()
  table = (
      f"{result['config']} ({result['image_size'][0]} px), "
      f"{result['batches']} eval batches of {result['eval_batch_size']}, "
      f"median of {_REPEATS.value} passes, {machine['backend']} with "
      f"{machine['cpu_count']} cores.\n\n" + common.markdown_table(
          ["evaluation loop", "examples / s", "vs before"],
          [[name, value, value / before]
           for name, value in throughput.items()]))
  print(table)
  print(f"after / before: {after / before:.2f}")
  print("wrote", common.write_results(
      "eval_speed", {"machine": machine, **result}, table))


if __name__ == "__main__":
  app.run(main)
