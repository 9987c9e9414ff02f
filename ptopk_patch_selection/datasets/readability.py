# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""Are the deciding numbers readable at the scorer's downscale? A probe.

For each generator, crops around its objects are cut from generated images
(JPEG round trip included) at full resolution and from the image average-
pooled by each --downscales factor; a small MLP (JAX + optax) learns what the
object shows and its test accuracy is printed with the majority-class rate:

  traffic signs : 4 classes, 50 / 70 / 80 / look-alike (other number, bar,
                  blank), i.e. what decides the image label;
  billiard      : 9 classes, the ball's number.

  python -m ptopk_patch_selection.datasets.readability --downscales=1,4,8

Crops span 1.25 times the largest object size and are centred on the object
with a random offset of up to 1/16 of its size.
"""

import functools
import io

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from ptopk_patch_selection.datasets import billiard_scene
from ptopk_patch_selection.datasets import generation
from ptopk_patch_selection.datasets import traffic_scene

_DOWNSCALES = flags.DEFINE_list("downscales", ["1", "4", "8"],
                                "Downscaling factors to probe (1 = full).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 1200,
                                   "Generated images per generator.")
_STEPS = flags.DEFINE_integer("steps", 1500, "MLP training steps.")


def _traffic_class(number: int) -> int:
  targets = traffic_scene.TARGET_NUMBERS
  return targets.index(number) if number in targets else len(targets)


GENERATORS = {
    # name: (make_example, spec, object -> class, number of classes)
    "synthetic_traffic_signs/small": (
        traffic_scene.make_example, traffic_scene.SceneSpec(), _traffic_class,
        4),
    "synthetic_billiard/small": (
        billiard_scene.make_example, billiard_scene.TableSpec(),
        lambda number: number - 1, 9),
}


def _crops(example, factor: int, rng: np.random.Generator, size_px: int):
  """(crops, numbers) of one example's objects at a downscale `factor`."""
  image = Image.open(io.BytesIO(example["image"])).convert("RGB")
  if factor > 1:
    image = image.reduce(factor)  # average pooling
  pixels = np.asarray(image, np.float32) / 255.0
  h, w = pixels.shape[:2]
  side = max(1, size_px // factor)
  padded = np.pad(pixels, ((side, side), (side, side), (0, 0)))
  crops = []
  for box in example["objects"]["bbox"]:
    cy, cx = (box[0] + box[2]) / 2 * h, (box[1] + box[3]) / 2 * w
    jitter = (box[2] - box[0]) * h / 16
    cy, cx = np.array([cy, cx]) + rng.uniform(-jitter, jitter, 2)
    # Top-left corner of the crop in `padded` (shifted by `side`).
    y0 = int(round(cy)) + side - side // 2
    x0 = int(round(cx)) + side - side // 2
    crops.append(padded[y0:y0 + side, x0:x0 + side].reshape(-1))
  return crops, list(example["objects"]["number"])


def _mlp_accuracy(x_train, y_train, x_test, y_test, num_classes, steps):
  """Test accuracy of a one-hidden-layer MLP trained with Adam."""
  mean, std = x_train.mean(0), x_train.std(0) + 1e-3
  x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
  key1, key2 = jax.random.split(jax.random.PRNGKey(0))
  hidden = 256
  params = {
      "w1": jax.random.normal(key1, (x_train.shape[1], hidden)) /
            np.sqrt(x_train.shape[1]),
      "b1": jnp.zeros(hidden),
      "w2": jax.random.normal(key2, (hidden, num_classes)) / np.sqrt(hidden),
      "b2": jnp.zeros(num_classes),
  }

  def logits_fn(p, x):
    return jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(
        logits_fn(p, x), y).mean()

  optimizer = optax.adamw(1e-3, weight_decay=1e-3)

  @jax.jit
  def step(p, state, x, y):
    grads = jax.grad(loss_fn)(p, x, y)
    updates, state = optimizer.update(grads, state, p)
    return optax.apply_updates(p, updates), state

  state = optimizer.init(params)
  rng = np.random.default_rng(0)
  for _ in range(steps):
    idx = rng.integers(0, len(x_train), 256)
    params, state = step(params, state, x_train[idx], y_train[idx])
  predictions = np.asarray(logits_fn(params, x_test)).argmax(-1)
  return float((predictions == y_test).mean())


def probe(name: str, num_images: int, factors: list[int], steps: int):
  """{factor: (accuracy, majority rate)} for one generator."""
  make_example, spec, to_class, num_classes = GENERATORS[name]
  fn = functools.partial(make_example, spec, 12345, 0)
  examples = list(generation.parallel_map(fn, range(num_images)))
  size_px = int(1.25 * max(
      (b[2] - b[0]) * spec.height for e in examples[:50]
      for b in e["objects"]["bbox"]))
  results = {}
  for factor in factors:
    rng = np.random.default_rng(factor)
    features, labels, image_ids = [], [], []
    for i, example in enumerate(examples):
      crops, numbers = _crops(example, factor, rng, size_px)
      features += crops
      labels += [to_class(int(n)) for n in numbers]
      image_ids += [i] * len(crops)
    x, y = np.stack(features), np.array(labels)
    train = np.array(image_ids) < 0.75 * num_images  # split by image
    accuracy = _mlp_accuracy(x[train], y[train], x[~train], y[~train],
                             num_classes, steps)
    majority = np.bincount(y[~train]).max() / (~train).sum()
    results[factor] = (accuracy, majority)
    print(f"{name}: downscale {factor}x, crops of {size_px // factor} px: "
          f"accuracy {accuracy:.3f} (majority class {majority:.3f}, "
          f"{(~train).sum()} test crops)", flush=True)
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  factors = [int(f) for f in _DOWNSCALES.value]
  for name in GENERATORS:
    probe(name, _NUM_IMAGES.value, factors, _STEPS.value)


if __name__ == "__main__":
  app.run(main)
