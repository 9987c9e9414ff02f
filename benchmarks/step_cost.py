# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Where a training step of the embedded default spends its time.

On the shapes of configs/synthetic.py (batch 16, k = 4 patches of 96 px from
512 px images), the median wall time of `--timed_calls` calls after compilation:
  * train step: `train.Trainer.train_step` on a batch of random pixels;
  * reader forward: the feature network on the b * k patches (train mode);
  * reader + parameter gradient: its gradient w.r.t. its parameters, what
    a model with fixed patches (random patches, say) needs;
  * reader + parameter and patch gradient: and w.r.t. the patches, what the
    scorer's gradient flows through;
  * stem input gradient: the gradient of the ResNet stem's 7x7 stride-2
    convolution w.r.t. its input, alone (its share of the line above);
  * the same by 4 stride-1 convolutions: the candidate replacement, one
    convolution per parity of the input pixel (`stem_input_gradient_by_phases`),
    checked against the line above before it is timed;
  * stem max-pool backward: the gradient of the stem's 3x3/2 max-pool.
Each also as a fraction of the train step. The reader must be a ResNet (its
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

_TIMED_CALLS = flags.DEFINE_integer("timed_calls", 5, "Timed calls per row.")


def _median_seconds(call, repeats: int) -> float:
  """Median wall time of `call()` (which blocks) after one warm-up call."""
  call()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def stem_input_gradient_by_phases(cotangent: jax.Array, kernel: jax.Array,
                                  padding: int) -> jax.Array:
  """The input gradient of a stride-2 "same" convolution, by phases.

  For y[o] = sum_k x[2o + k - P] w[k] (per axis, P = `padding`), the input
  pixel i = 2m + p receives dy[o] w[k] only from taps k = q + 2t with
  q = (p + P) mod 2, at o = m + c - t, c = (p + P - q) / 2. So each of the 4
  parities (p_y, p_x) of the input is a stride-1 correlation of dy with the
  flipped sub-kernel w[q::2], padded (T - 1 - c, c) for its T taps; no
  dilated input, which XLA's CPU convolution is slow at.

  cotangent: (n, h/2, w/2, c_out); kernel: (K, K, c_in, c_out) HWIO;
  returns (n, h, w, c_in) for even h and w.
  """
  transposed = jnp.swapaxes(kernel, 2, 3)  # maps c_out back to c_in

  def taps(parity):  # (first tap q, padding) of one axis
    q = (parity + padding) % 2
    num_taps = -(-(kernel.shape[0] - q) // 2)
    offset = (parity + padding - q) // 2
    return q, (num_taps - 1 - offset, offset)

  rows = []
  for parity_y in (0, 1):
    q_y, pad_y = taps(parity_y)
    columns = []
    for parity_x in (0, 1):
      q_x, pad_x = taps(parity_x)
      columns.append(jax.lax.conv_general_dilated(
          cotangent, transposed[q_y::2, q_x::2][::-1, ::-1], (1, 1),
          (pad_y, pad_x), dimension_numbers=("NHWC", "HWIO", "NHWC")))
    rows.append(jnp.stack(columns, axis=3))  # (n, h/2, w/2, p_x, c_in)
  phases = jnp.stack(rows, axis=2)  # (n, h/2, p_y, w/2, p_x, c_in)
  n, half_h, _, half_w, _, channels = phases.shape
  return phases.reshape(n, 2 * half_h, 2 * half_w, channels)


def _train_step_seconds(config: ml_collections.ConfigDict,
                        repeats: int) -> float:
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
  return _median_seconds(step, repeats)


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
      lambda _, cotangent: (stem_input_gradient_by_phases(cotangent, kernel,
                                                          padding),))

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
  parts = {
      "reader forward": (jax.jit(features), (params, patches)),
      "reader + parameter gradient": (jax.jit(jax.grad(reader_loss)),
                                      (params, patches)),
      "reader + parameter and patch gradient": (
          jax.jit(jax.grad(reader_loss, argnums=(0, 1))), (params, patches)),
      "stem input gradient": (stem_gradient, (patches,)),
      "the same by 4 stride-1 convolutions": (phases_gradient, (patches,)),
      "stem max-pool backward": (
          jax.jit(jax.grad(lambda y: jnp.sum(pool(y) ** 2))), (stem_maps,)),
  }
  rows = [("train step", _train_step_seconds(config, repeats))]
  for name, (fn, args) in parts.items():
    rows.append((name, _median_seconds(
        lambda fn=fn, args=args: jax.block_until_ready(fn(*args)), repeats)))
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
