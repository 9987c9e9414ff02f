# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Where a training step of the embedded default spends its time.

On the shapes of configs/synthetic.py (batch 16, k = 4 patches of 96 px from
512 px images), the median wall time of `--timed_calls` calls after compilation
(the two train steps take turns):
  * train step: `train.Trainer.train_step` on a batch of random pixels,
    with `model.stem_gradient="xla"` (XLA's own gradients) and with
    `"phases"` (the stem's input gradients by phases, the default's);
    the first is the step the fractions below divide by;
  * reader forward: the feature network on the b * k patches (train mode);
  * reader + parameter gradient: its gradient w.r.t. its parameters, what
    a model with fixed patches (random patches, say) needs;
  * reader + parameter and patch gradient: and w.r.t. the patches, what the
    scorer's gradient flows through;
  * stem input gradient: the gradient of the ResNet stem's 7x7 stride-2
    convolution w.r.t. its input, alone (its share of the line above);
  * stem input gradient by phases: one stride-1 convolution to the 4
    parities of the input pixel (`phase_conv.input_gradient_by_phases`),
    checked against the line above before it is timed;
  * stem max-pool backward: the gradient of the stem's 3x3/2 max-pool;
  * stem max-pool backward by phases: `phase_conv.max_pool_3x3_stride2`'s
    (the 9 window offsets compared on the output grid), checked against
    the line above.
The phase rows are the two halves of `model.stem_gradient="phases"`. Each
also as a fraction of the train step. The reader must be a ResNet (its
"standard" stem: padding 3, then max-pool 3x3/2 with padding 1).

  python -m benchmarks.step_cost

writes benchmarks/results/step_cost.{json,md}.
"""

import statistics
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
from jax.sharding import Mesh
import jax.numpy as jnp
import ml_collections
import numpy as np

from benchmarks import common
from configs import synthetic
from ptopk_patch_selection import console
from ptopk_patch_selection import train
from ptopk_patch_selection.models import feature_networks
from ptopk_patch_selection.models import phase_conv

_TIMED_CALLS = flags.DEFINE_integer("timed_calls", 5, "Timed calls per row.")


def _median_seconds(*calls, repeats: int) -> list[float]:
  """Median wall time of each `call()` (which blocks) after one warm-up
  call each; the calls take turns, so a machine that speeds up or slows
  down during the measurement moves every median alike."""
  for call in calls:
    call()
  times = [[] for _ in calls]
  for _ in range(repeats):
    for call, samples in zip(calls, times):
      start = time.perf_counter()
      call()
      samples.append(time.perf_counter() - start)
  return [statistics.median(samples) for samples in times]


def _train_step(config: ml_collections.ConfigDict):
  """A blocking call of one train step of `config` on random pixels."""
  mesh = Mesh(np.array(jax.devices()[:1]), (train.DATA_AXIS,))
  trainer = train.Trainer(config, config.dataset.num_classes, mesh)
  rng = np.random.default_rng(0)
  size = tuple(config.dataset.image_size)
  batch = trainer.global_batch({
      "image": rng.random((config.batch_size, *size, 3), np.float32),
      "label": (np.arange(config.batch_size) %
                config.dataset.num_classes).astype(np.int32)})
  state = trainer.create_state()

  def step():
    nonlocal state
    state, _ = trainer.train_step(state, batch)  # donates the old state
    jax.block_until_ready(state)
  return step


def measure(config: ml_collections.ConfigDict,
            repeats: int) -> list[tuple[str, float]]:
  """[(part, seconds)] of one training step of `config` (module docstring)."""
  model = config.model
  if (model.feature_network not in feature_networks.STRIDE_32_NETWORKS or
      model.resnet_stem != "standard"):
    raise ValueError(
        f"model.feature_network={model.feature_network!r}, resnet_stem="
        f"{model.resnet_stem!r}: the stem rows need a ResNet "
        f"({feature_networks.STRIDE_32_NETWORKS}) with the standard stem.")
  net = feature_networks.feature_network(model.feature_network,
                                         model.resnet_stem)
  patches = jnp.asarray(np.random.default_rng(1).random(
      (config.batch_size * model.k, model.patch_size, model.patch_size, 3),
      np.float32))
  variables = net.init(jax.random.key(0), patches, train=False)
  params, stats = variables["params"], variables["batch_stats"]

  def features(params, patches):
    return net.apply({"params": params, "batch_stats": stats}, patches,
                     train=True, mutable=["batch_stats"])[0]

  def reader_loss(params, patches):
    return jnp.sum(features(params, patches) ** 2)

  kernel = params["stem_conv"]["kernel"]
  padding = 3  # the standard stem's, on every side

  def stem(patches):
    return jax.lax.conv_general_dilated(
        patches, kernel, (2, 2), ((padding, padding),) * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  @jax.custom_vjp
  def stem_by_phases(patches):
    return stem(patches)

  stem_by_phases.defvjp(
      lambda patches: (stem(patches), None),
      lambda _, cotangent: (phase_conv.input_gradient_by_phases(
          cotangent, kernel, padding),))

  def pool(maps):
    return nn.max_pool(maps, (3, 3), strides=(2, 2),
                       padding=((1, 1), (1, 1)))

  stem_gradient = jax.jit(jax.grad(lambda x: jnp.sum(stem(x) ** 2)))
  phases_gradient = jax.jit(jax.grad(
      lambda x: jnp.sum(stem_by_phases(x) ** 2)))
  expected = stem_gradient(patches)
  np.testing.assert_allclose(phases_gradient(patches), expected, rtol=1e-4,
                             atol=1e-5 * float(jnp.max(jnp.abs(expected))))
  stem_maps = stem(patches)
  pool_gradient = jax.jit(jax.grad(lambda y: jnp.sum(pool(y) ** 2)))
  pool_phases_gradient = jax.jit(jax.grad(
      lambda y: jnp.sum(phase_conv.max_pool_3x3_stride2(y) ** 2)))
  np.testing.assert_allclose(pool_phases_gradient(stem_maps),
                             pool_gradient(stem_maps), rtol=1e-6, atol=1e-6)
  parts = {
      "reader forward": (jax.jit(features), (params, patches)),
      "reader + parameter gradient": (jax.jit(jax.grad(reader_loss)),
                                      (params, patches)),
      "reader + parameter and patch gradient": (
          jax.jit(jax.grad(reader_loss, argnums=(0, 1))), (params, patches)),
      "stem input gradient": (stem_gradient, (patches,)),
      "stem input gradient by phases": (phases_gradient, (patches,)),
      "stem max-pool backward": (pool_gradient, (stem_maps,)),
      "stem max-pool backward by phases": (pool_phases_gradient, (stem_maps,)),
  }
  def train_step(gradient):
    with_gradient = config.copy_and_resolve_references()
    with_gradient.model.stem_gradient = gradient
    return _train_step(with_gradient)

  # ("xla", "phases"): the fractions divide by the first.
  gradients = feature_networks.STEM_GRADIENTS
  rows = list(zip(
      [f'train step, model.stem_gradient="{g}"' for g in gradients],
      _median_seconds(*map(train_step, gradients), repeats=repeats)))
  for name, (fn, args) in parts.items():
    rows.append((name, _median_seconds(
        lambda fn=fn, args=args: jax.block_until_ready(fn(*args)),
        repeats=repeats)[0]))
  return rows


def run(config: ml_collections.ConfigDict, repeats: int,
        results_dir: str = common.RESULTS_DIR) -> list[dict]:
  """Measures, prints and writes the table; returns its rows."""
  rows = measure(config, repeats)
  step = rows[0][1]
  results = [{"part": name, "seconds": seconds, "fraction": seconds / step}
             for name, seconds in rows]
  machine = common.machine_description()
  model = config.model
  table = (
      f"{model.feature_network} reader, batch {config.batch_size}, k = "
      f"{model.k} patches of {model.patch_size} px from "
      f"{config.dataset.image_size[0]} px images, "
      f"{model.perturbed.num_samples} noise samples; median of {repeats} "
      f"calls after compilation, {machine['backend']} with "
      f"{machine['cpu_count']} cores.\n\n" + common.markdown_table(
          ["part", "s", "of the train step"],
          [[r["part"], r["seconds"], r["fraction"]] for r in results]))
  print(table)
  print("wrote", common.write_results(
      "step_cost", {"machine": machine, "rows": results}, table,
      results_dir))
  return results


def main(argv):
  del argv
  console.quiet_library_logs()
  config = synthetic.get_config()
  config.model.pretrained_checkpoint = ""  # the same cost, no file needed
  run(config, _TIMED_CALLS.value)


if __name__ == "__main__":
  app.run(main)
