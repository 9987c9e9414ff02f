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

`--mode=inference` is the paper's figure itself: the evaluation forward pass
only, with the released speed-plot settings (configs/synthetic/speed_plot.py
of the released code): ResNet-50 feature network, squeeze-excite scorer on the
image downscaled 4x, hard Top-K of k=10 patches of 100 px, max pooling, batch
2; against ResNet-50 on the whole image. Per size: samples per second and the
compiled program's memory (temporary + argument + output bytes of
`memory_analysis()`, what XLA plans to hold; the CPU has no peak counter). One
more row times the feature network alone on the same b * k patches (the floor
of any patch model), and "selection overhead" is PatchNet's time over it.

  python -m benchmarks.model_speed --mode=inference   # 256-1024 px, minutes
  python -m benchmarks.model_speed --mode=inference \
      --sizes=512,1024,2048,4096 --max_time_size=4096  # the paper's range

writes benchmarks/results/model_speed_inference.{json,md,png}.

`--megapixel_mnist` times the train step at 1500 px with the paper-scale
Megapixel MNIST model (configs/megapixel_mnist.py: ResNet-18, K=10 patches of
50 px, scorer at 1/6, 500 noise samples, mean aggregator) against ResNet-18
on the whole image:

  python -m benchmarks.model_speed --megapixel_mnist

writes benchmarks/results/model_speed_megapixel_mnist.{json,md}.
"""

import os
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
from configs import megapixel_mnist
from ptopk_patch_selection import models
from ptopk_patch_selection.models import feature_networks

_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "inference"],
    "train: a training step (forward + backward); inference: the paper's "
    "speed plot (evaluation forward, released speed-plot settings).")
_SIZES = flags.DEFINE_list(
    "sizes", None, "Square image sizes (default 512-4096 for train, "
    "256-1024 for inference).")
_MAX_TIME_SIZE = flags.DEFINE_integer(
    "max_time_size", 1024, "Time the steps only up to this size (memory is "
    "measured at every size).")
_FEATURE_NETWORK = flags.DEFINE_string(
    "feature_network", None, "Feature network of both models (default "
    "resnet18 for train, resnet50 for inference).")
_SELECTIONS = flags.DEFINE_list("selections", ["hard", "perturbed"],
                                "PatchNet selection methods.")
_K = flags.DEFINE_integer("k", 10, "Number of patches.")
_PATCH_SIZE = flags.DEFINE_integer("patch_size", 100, "Patch side.")
_DOWNSCALE = flags.DEFINE_integer("downscale", 4, "Scorer downscale.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 500,
                                    "Perturbed Top-K samples.")
_BATCH = flags.DEFINE_integer("batch", 2, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed steps per model.")
_MEGAPIXEL_MNIST = flags.DEFINE_bool(
    "megapixel_mnist", False, "Train mode at 1500 px with the model of "
    "configs/megapixel_mnist.py (k, patch size, downscale, feature network, "
    "noise samples, mean aggregator); writes model_speed_megapixel_mnist.")

DEFAULTS = {"train": (["512", "1024", "2048", "4096"], "resnet18"),
            "inference": (["256", "512", "1024"], "resnet50")}


def _sizes_and_network():
  sizes, network = DEFAULTS[_MODE.value]
  return (list(map(int, _SIZES.value or sizes)),
          _FEATURE_NETWORK.value or network)


def _use_megapixel_mnist_model() -> None:
  """Sets the model flags to the paper-scale Megapixel MNIST config's."""
  config = megapixel_mnist.get_config()
  model = config.model
  size = config.dataset.image_size[0]
  flags.FLAGS.sizes = [str(size)]
  flags.FLAGS.max_time_size = size
  flags.FLAGS.feature_network = model.feature_network
  flags.FLAGS.k = model.k
  flags.FLAGS.patch_size = model.patch_size
  flags.FLAGS.downscale = model.downscale
  flags.FLAGS.num_samples = model.perturbed.num_samples


def _aggregator() -> str:
  return "mean" if _MEGAPIXEL_MNIST.value else "max"


def _model(name, selection, size):
  config = default.get_config().model
  config.update(name=name, feature_network=_sizes_and_network()[1], k=_K.value,
                patch_size=_PATCH_SIZE.value, downscale=_DOWNSCALE.value,
                aggregator=_aggregator(), selection=selection)
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
  if _MEGAPIXEL_MNIST.value:
    if _MODE.value != "train":
      raise app.UsageError("--megapixel_mnist measures the train step only.")
    _use_megapixel_mnist_model()
  sizes, network = _sizes_and_network()
  if _MODE.value == "inference":
    results = run_inference(
        sizes, batch=_BATCH.value, k=_K.value, patch_size=_PATCH_SIZE.value,
        downscale=_DOWNSCALE.value, feature_network=network,
        repeats=_REPEATS.value, max_time_size=_MAX_TIME_SIZE.value)
    print(results["table"])
    print(f"Wrote {results['json']} and {results['png']}")
    return
  rows, skipped = [], []
  for size in sizes:
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

  header = (f"Train step (fwd+bwd) of PatchNet ({network}, "
            f"k={_K.value} patches of {_PATCH_SIZE.value} px, scorer at "
            f"1/{_DOWNSCALE.value}, {_NUM_SAMPLES.value} noise samples, "
            f"{_aggregator()} aggregator) against "
            f"{network} on the whole image, batch "
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
  name = "model_speed_megapixel_mnist" if _MEGAPIXEL_MNIST.value else (
      "model_speed")
  path = common.write_results(name, {
      "flags": {name: flags.FLAGS[name].value for name in (
          "max_time_size", "selections", "k", "patch_size", "downscale",
          "num_samples", "batch", "repeats")} | {
              "sizes": list(map(str, sizes)), "feature_network": network},
      "machine": common.machine_description(), "rows": rows,
      "not_timed_sizes": skipped}, header + "\n\n" + table)
  print(f"Wrote {path}")


def _or_dash(value):
  return "-" if value is None else value


def _program_mb(compiled):
  """What the compiled program holds: temporaries, arguments and outputs."""
  memory = compiled.memory_analysis()
  return (memory.temp_size_in_bytes + memory.argument_size_in_bytes +
          memory.output_size_in_bytes) / 2**20


def _compile_forward(module, input_shape, timed):
  """(program MB, a no-argument run of the compiled forward or None)."""
  images = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  init = lambda x: module.init(jax.random.key(1), x, train=False)
  variables = jax.eval_shape(init, images)
  forward = jax.jit(lambda v, x: module.apply(v, x, train=False))
  compiled = forward.lower(variables, images).compile()
  if not timed:
    return _program_mb(compiled), None
  x = jax.random.uniform(jax.random.key(0), input_shape)
  variables = jax.jit(init)(x)
  run = lambda: jax.block_until_ready(compiled(variables, x))
  run()  # warm-up
  return _program_mb(compiled), run


def _interleaved_seconds(runs, repeats):
  """Median seconds of each run, timed in turn so that load drift (a shared
  machine) hits all alike."""
  times = {name: [] for name in runs}
  for _ in range(repeats):
    for name, run in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def _inference_model(name, size, *, k, patch_size, downscale,
                     feature_network):
  """The released speed plot's model: SE scorer, hard Top-K, max pooling."""
  config = default.get_config().model
  config.update(name=name, feature_network=feature_network, k=k,
                patch_size=patch_size, downscale=downscale, aggregator="max",
                scorer_has_se=True, selection="perturbed",
                selection_eval="hard")
  return models.create_model(config, num_classes=10, image_size=(size, size))


def plot_inference(rows, features, path, title):
  """samples/s and program memory against image size, to a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, (speed, memory) = plt.subplots(1, 2, figsize=(9, 3.6))
  sizes = [row["size"] for row in rows]
  for key, label, style in (("patchnet", "PatchNet (k patches)", "o-"),
                            ("whole_image", "whole image", "s-")):
    timed = [(row["size"], row[key]["samples_per_s"]) for row in rows
             if row[key]["samples_per_s"] is not None]
    if timed:
      speed.plot(*zip(*timed), style, label=label)
    memory.plot(sizes, [row[key]["program_mb"] for row in rows], style,
                label=label)
  if features["samples_per_s"] is not None:
    speed.axhline(features["samples_per_s"], color="gray", ls="--",
                  label="feature network alone on the k patches")
  for axis, ylabel in ((speed, "samples / s"), (memory, "program MB")):
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xticks(sizes, [str(s) for s in sizes])
    axis.set_xlabel("image side (px)")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
  speed.legend(fontsize=7)
  figure.suptitle(title, fontsize=9)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def run_inference(sizes, *, batch=2, k=10, patch_size=100, downscale=4,
                  feature_network="resnet50", repeats=3, max_time_size=1024,
                  results_dir=common.RESULTS_DIR,
                  name="model_speed_inference"):
  """Times the evaluation forward pass; writes <name>.{json,md,png}.

  Returns the results dict, with "table", "json" and "png" (paths) added.
  """
  rows, skipped, floor_times = [], [], []
  features_mb, features_run = _compile_forward(
      feature_networks.feature_network(feature_network),
      (batch * k, patch_size, patch_size, 3), timed=True)
  options = dict(k=k, patch_size=patch_size, downscale=downscale,
                 feature_network=feature_network)
  for size in sizes:
    timed = size <= max_time_size
    if not timed:
      skipped.append(size)
    shape = (batch, size, size, 3)
    measured, runs = {}, {}
    for model in ("patchnet", "whole_image"):
      program_mb, runs[model] = _compile_forward(
          _inference_model(model, size, **options), shape, timed)
      measured[model] = {"program_mb": program_mb, "time_s": None,
                         "samples_per_s": None}
    if timed:
      runs["features"] = features_run
      for model, seconds in _interleaved_seconds(runs, repeats).items():
        if model == "features":
          floor_times.append(seconds)
        else:
          measured[model].update(time_s=seconds,
                                 samples_per_s=batch / seconds)
    patch, whole = measured["patchnet"], measured["whole_image"]
    rows.append({
        "size": size, "patchnet": patch, "whole_image": whole,
        "speedup": _ratio(whole["time_s"], patch["time_s"]),
        "memory_ratio": _ratio(whole["program_mb"], patch["program_mb"]),
        "features_time_s": floor_times[-1] if timed else None,
        "selection_overhead": _ratio(
            patch["time_s"], floor_times[-1] if timed else None),
    })
    logging.info("%s", rows[-1])
  floor = statistics.median(floor_times) if floor_times else None
  features = {"program_mb": features_mb, "time_s": floor,
              "samples_per_s": batch / floor if floor else None}
  floor_speed = ("-" if features["samples_per_s"] is None else
                 f"{features['samples_per_s']:.3g}")
  machine = common.machine_description()
  header = (f"Inference (evaluation forward) of PatchNet ({feature_network} "
            f"on k={k} hard Top-K patches of {patch_size} px, squeeze-excite "
            f"scorer at {downscale}x downscale, max pooling) against "
            f"{feature_network} on the whole image; batch {batch}, "
            f"{machine['device']} ({machine['cpu_count']} cores), median of "
            f"{repeats}, the models of a size timed in turn. Speed-up and "
            "memory ratio are whole / PatchNet; selection overhead is "
            "PatchNet's time over the feature network alone on the same "
            f"{batch}x{k} patches, timed in the same turns (median "
            f"{floor_speed} samples/s, {features['program_mb']:.3g} MB).")
  table = common.markdown_table(
      ["size", "PatchNet samples/s", "whole samples/s", "speed-up",
       "PatchNet MB", "whole MB", "memory ratio", "selection overhead"],
      [[row["size"], _or_dash(row["patchnet"]["samples_per_s"]),
        _or_dash(row["whole_image"]["samples_per_s"]),
        _or_dash(row["speedup"]), row["patchnet"]["program_mb"],
        row["whole_image"]["program_mb"], row["memory_ratio"],
        _or_dash(row["selection_overhead"])] for row in rows])
  if skipped:
    table += (f"\n\nNot timed (memory only): sizes {skipped} > "
              f"max_time_size={max_time_size}.")
  png = os.path.join(results_dir, f"{name}.png")
  os.makedirs(results_dir, exist_ok=True)
  plot_inference(rows, features, png,
                 f"Inference (evaluation forward), {feature_network}, k={k} "
                 f"patches of {patch_size} px, batch {batch}, "
                 f"{machine['device']} ({machine['cpu_count']} cores)")
  results = {
      "settings": dict(sizes=list(sizes), batch=batch, k=k,
                       patch_size=patch_size, downscale=downscale,
                       feature_network=feature_network, repeats=repeats,
                       max_time_size=max_time_size),
      "machine": machine, "features_only": features, "rows": rows,
      "not_timed_sizes": skipped}
  path = common.write_results(name, results, header + "\n\n" + table,
                              results_dir=results_dir)
  return results | {"table": header + "\n\n" + table, "json": path,
                    "png": png}


if __name__ == "__main__":
  app.run(main)
