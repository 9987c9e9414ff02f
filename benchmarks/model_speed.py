# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Train-step cost of PatchNet against the same network on the whole image.

The paper's speed plot (appendix B), as a training step (forward + backward):
PatchNet (scorer on the image downscaled 4x, k patches of patch_size, the
feature network on the patches, max pooling) with hard or perturbed Top-K,
against `WholeImageClassifier` with the same feature network, on square
images from 512 to 4096 px. Two numbers per model and size:
  * temp_mb: XLA's temporary buffers of the compiled step
    (`compile().memory_analysis().temp_size_in_bytes`); compile only, cheap
    at every size;
  * time_s: median wall time of `--repeats` steps after compilation; only up
    to `--max_time_size` (a ResNet on a 4096^2 image is very slow on a CPU).

  python -m benchmarks.model_speed --max_time_size=1024

Prints a table with ratios (whole image / PatchNet) and writes
benchmarks/results/model_speed.{json,md}.
"""

import statistics
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import optax

from benchmarks import common
from configs import default
from ptopk_patch_selection import models

_SIZES = flags.DEFINE_list("sizes", ["512", "1024", "2048", "4096"],
                           "Square image sizes.")
_MAX_TIME_SIZE = flags.DEFINE_integer(
    "max_time_size", 1024, "Time the steps only up to this size (memory is "
    "measured at every size).")
_FEATURE_NETWORK = flags.DEFINE_string("feature_network", "resnet18",
                                       "Feature network of both models.")
_SELECTIONS = flags.DEFINE_list("selections", ["hard", "perturbed"],
                                "PatchNet selection methods.")
_K = flags.DEFINE_integer("k", 10, "Number of patches.")
_PATCH_SIZE = flags.DEFINE_integer("patch_size", 100, "Patch side.")
_DOWNSCALE = flags.DEFINE_integer("downscale", 4, "Scorer downscale.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 500,
                                    "Perturbed Top-K samples.")
_BATCH = flags.DEFINE_integer("batch", 2, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed steps per model.")


def _model(name, selection, size):
  config = default.get_config().model
  config.update(name=name, feature_network=_FEATURE_NETWORK.value, k=_K.value,
                patch_size=_PATCH_SIZE.value, downscale=_DOWNSCALE.value,
                aggregator="max", selection=selection)
  config.perturbed.num_samples = _NUM_SAMPLES.value
  return models.create_model(config, num_classes=10, image_size=(size, size))


def _train_step(model):
  """Gradient of the cross entropy, with BatchNorm statistics updated."""
  def step(variables, images, labels, key):
    def loss(params):
      (logits, _), state = model.apply(
          {**variables, "params": params}, images, train=True, sigma=0.05,
          rngs={"selection": key, "dropout": key}, mutable=["batch_stats"])
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
      return ce.mean(), state
    return jax.grad(loss, has_aux=True)(variables["params"])
  return jax.jit(step)


def _measure(model, size, timed):
  """{"temp_mb", "time_s"} of one training step."""
  images = jax.ShapeDtypeStruct((_BATCH.value, size, size, 3), jnp.float32)
  labels = jax.ShapeDtypeStruct((_BATCH.value,), jnp.int32)
  key = jax.random.key(0)
  init = lambda x: model.init(jax.random.key(1), x, train=False)
  variables = jax.eval_shape(init, images)
  step = _train_step(model)
  compiled = step.lower(variables, images, labels, key).compile()
  result = {"temp_mb": compiled.memory_analysis().temp_size_in_bytes / 2**20,
            "time_s": None}
  if timed:
    x = jax.random.uniform(key, images.shape)
    y = jnp.zeros(labels.shape, jnp.int32)
    variables = jax.jit(init)(x)
    jax.block_until_ready(compiled(variables, x, y, key))
    times = []
    for _ in range(_REPEATS.value):
      start = time.perf_counter()
      jax.block_until_ready(compiled(variables, x, y, key))
      times.append(time.perf_counter() - start)
    result["time_s"] = statistics.median(times)
  return result


def _ratio(whole, patch):
  return None if whole is None or patch is None else whole / patch


def main(argv):
  del argv
  rows, skipped = [], []
  for size in map(int, _SIZES.value):
    timed = size <= _MAX_TIME_SIZE.value
    if not timed:
      skipped.append(size)
    whole = _measure(_model("whole_image", "hard", size), size, timed)
    for selection in _SELECTIONS.value:
      patch = _measure(_model("patchnet", selection, size), size, timed)
      rows.append({
          "size": size, "selection": selection, "patchnet": patch,
          "whole_image": whole,
          "time_ratio": _ratio(whole["time_s"], patch["time_s"]),
          "memory_ratio": _ratio(whole["temp_mb"], patch["temp_mb"]),
      })
      logging.info("%s", rows[-1])

  header = (f"Train step (fwd+bwd) of PatchNet ({_FEATURE_NETWORK.value}, "
            f"k={_K.value} patches of {_PATCH_SIZE.value} px) against "
            f"{_FEATURE_NETWORK.value} on the whole image, batch "
            f"{_BATCH.value}, {jax.devices()[0].device_kind}; ratios are "
            "whole / PatchNet.")
  table = common.markdown_table(
      ["size", "selection", "PatchNet s", "whole s", "time ratio",
       "PatchNet MB", "whole MB", "memory ratio"],
      [[row["size"], row["selection"],
        _or_dash(row["patchnet"]["time_s"]),
        _or_dash(row["whole_image"]["time_s"]), _or_dash(row["time_ratio"]),
        row["patchnet"]["temp_mb"], row["whole_image"]["temp_mb"],
        row["memory_ratio"]] for row in rows])
  if skipped:
    table += (f"\n\nNot timed (memory only): sizes {skipped} > "
              f"--max_time_size={_MAX_TIME_SIZE.value}.")
  print(header + "\n" + table)
  path = common.write_results("model_speed", {
      "flags": {name: flags.FLAGS[name].value for name in (
          "sizes", "max_time_size", "feature_network", "selections", "k",
          "patch_size", "downscale", "num_samples", "batch", "repeats")},
      "machine": common.machine_description(), "rows": rows,
      "not_timed_sizes": skipped}, header + "\n\n" + table)
  print(f"Wrote {path}")


def _or_dash(value):
  return "-" if value is None else value


if __name__ == "__main__":
  app.run(main)
