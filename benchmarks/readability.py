# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""Are the deciding numbers readable at the scorer's downscale? A probe.

For each generator, crops around its objects are cut from generated images
(JPEG round trip included) at full resolution and from the image average-
pooled by each --downscales factor; a small CNN (flax + optax) learns what the
object shows. Printed per factor: test accuracy, balanced accuracy (mean
recall over classes) and the majority-class rate, i.e. chance:

  traffic signs : 4 classes, 50 / 70 / 80 / look-alike (other number, bar,
                  blank), i.e. what decides the image label;
  billiard      : 9 classes, the ball's number.

  python -m benchmarks.readability --downscales=1,4,8

Crops span 1.25 times the largest object size and are centred on the object
with a random offset of up to 1/16 of its size. The first 3/4 of the images
train (3 crops per object, with different offsets), the rest test (one).

The CNN reads each crop at the resolution the scorer would see, with no
upsampling: four 3x3 convolutions (`_FEATURES` channels, ReLU), each of
stride 2 while its input is wider than 12 px, then one dense layer on the
flattened feature map (the crops are centred, so where a stroke lies
matters). A full-resolution crop (about 45 px) is read as 23 and then 12 px
feature maps, a crop of at most 12 px (4x, 8x) at its own resolution
throughout. Upsampling the small crops to the full size instead would add no
information and cost the full-resolution compute for every factor; this way
the probe is, if anything, stronger on the downscaled crops, so a
near-chance reading there means unreadable rather than a weak probe.
"""

import functools
import io
from typing import Callable, NamedTuple

from absl import app
from absl import flags
import flax.linen as nn
import jax
import numpy as np
import optax
from PIL import Image

from ptopk_patch_selection.datasets import billiard_scene
from ptopk_patch_selection.datasets import generation
from ptopk_patch_selection.datasets import traffic_scene

_DOWNSCALES = flags.DEFINE_list("downscales", ["1", "4", "8"],
                                "Downscaling factors to probe (1 = full).")
_NUM_IMAGES = flags.DEFINE_integer("probe_images", 2000,
                                   "Generated images per generator.")
_STEPS = flags.DEFINE_integer("steps", 2000, "CNN training steps.")
_GENERATOR_NAMES = flags.DEFINE_list("generators", None,
                                     "Generators to probe (default: all).")

_FEATURES = (32, 32, 64, 64)  # channels of the 3x3 convolutions
_MAX_UNSTRIDED = 12  # convolutions on wider inputs have stride 2
_BATCH_SIZE = 64
_LEARNING_RATE = 2e-3
_TRAIN_CROPS = 3  # crops per object of a training image (random offsets)


def _traffic_class(number: int) -> int:
  targets = traffic_scene.TARGET_NUMBERS
  return targets.index(number) if number in targets else len(targets)


GENERATORS = {
    # name: (make_example, spec, object number -> class, number of classes)
    "synthetic_traffic_signs/textures": (
        traffic_scene.make_example,
        traffic_scene.SceneSpec(sign_diameter=(48, 64), content="texture"),
        _traffic_class, 4),
    "synthetic_traffic_signs/small": (
        traffic_scene.make_example, traffic_scene.SceneSpec(), _traffic_class,
        4),
    "synthetic_billiard/small": (
        billiard_scene.make_example, billiard_scene.TableSpec(),
        lambda number: number - 1, 9),
}


class Reading(NamedTuple):
  """Test results of the probe at one downscale factor."""
  accuracy: float
  balanced_accuracy: float  # mean recall over the classes in the test set
  majority: float  # accuracy of always answering the commonest test class
  num_test: int  # test crops
  crop_px: int  # crop side at this factor


class _Cnn(nn.Module):
  """(n, s, s, 3) crops -> (n, num_classes) logits; see the module doc."""
  num_classes: int

  @nn.compact
  def __call__(self, x):
    for features in _FEATURES:
      stride = 2 if x.shape[1] > _MAX_UNSTRIDED else 1
      x = nn.relu(nn.Conv(features, (3, 3), strides=stride)(x))
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


def _pooled_pixels(example, factor: int) -> np.ndarray:
  """float32 (h / factor, w / factor, 3) in [0, 1]: the average-pooled image."""
  image = Image.open(io.BytesIO(example["image"])).convert("RGB")
  if factor > 1:
    image = image.reduce(factor)
  return np.asarray(image, np.float32) / 255.0


def _crops(pixels, boxes, side: int, rng: np.random.Generator) -> np.ndarray:
  """float32 (len(boxes), side, side, 3): one crop of `pixels` per box.

  Each crop is centred on its normalised (ymin, xmin, ymax, xmax) box moved
  by up to 1/16 of the box height in y and x; zeros outside the image.
  """
  h, w = pixels.shape[:2]
  padded = np.pad(pixels, ((side, side), (side, side), (0, 0)))
  crops = []
  for box in boxes:
    cy, cx = (box[0] + box[2]) / 2 * h, (box[1] + box[3]) / 2 * w
    jitter = (box[2] - box[0]) * h / 16
    cy, cx = np.array([cy, cx]) + rng.uniform(-jitter, jitter, 2)
    # Top-left corner of the crop in `padded` (shifted by `side`).
    y0 = int(round(cy)) + side - side // 2
    x0 = int(round(cx)) + side - side // 2
    crops.append(padded[y0:y0 + side, x0:x0 + side])
  return np.stack(crops)


def cnn_predictions(x_train: np.ndarray, y_train: np.ndarray,
                    x_test: np.ndarray, num_classes: int, steps: int,
                    seed: int = 0) -> np.ndarray:
  """Trains the CNN on (x_train, y_train) and predicts classes of x_test.

  Args:
    x_train: float32 (n, s, s, 3) crops.
    y_train: int (n,) classes in [0, num_classes).
    x_test: float32 (m, s, s, 3) crops.
    num_classes: number of classes.
    steps: Adam steps on random batches of `_BATCH_SIZE` (cosine decay).
    seed: initialisation and batch order.

  Returns:
    int (m,) predicted classes.
  """
  mean, std = x_train.mean((0, 1, 2)), x_train.std((0, 1, 2)) + 1e-3
  x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
  model = _Cnn(num_classes)
  params = model.init(jax.random.PRNGKey(seed), x_train[:1])
  optimizer = optax.adam(optax.cosine_decay_schedule(_LEARNING_RATE, steps))
  state = optimizer.init(params)

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(
        model.apply(p, x), y).mean()

  @jax.jit
  def step(p, state, x, y):
    grads = jax.grad(loss_fn)(p, x, y)
    updates, state = optimizer.update(grads, state, p)
    return optax.apply_updates(p, updates), state

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    idx = rng.integers(0, len(x_train), _BATCH_SIZE)
    params, state = step(params, state, x_train[idx], y_train[idx])
  return np.asarray(jax.jit(model.apply)(params, x_test)).argmax(-1)


def _reading(predictions, labels, crop_px) -> Reading:
  """The Reading of int (m,) `predictions` of int (m,) `labels`."""
  classes = np.unique(labels)
  recalls = [(predictions[labels == c] == c).mean() for c in classes]
  return Reading(
      accuracy=float((predictions == labels).mean()),
      balanced_accuracy=float(np.mean(recalls)),
      majority=float(np.bincount(labels).max() / len(labels)),
      num_test=len(labels), crop_px=crop_px)


def probe(examples: list[dict], image_height: int,
          to_class: Callable[[int], int], num_classes: int,
          factors: list[int], steps: int) -> dict[int, Reading]:
  """{factor: Reading}: how well the CNN reads the objects of `examples`.

  The first 3/4 of `examples` train (`_TRAIN_CROPS` crops per object), the
  rest test (one crop per object).

  Args:
    examples: generated examples (JPEG bytes and objects with bbox, number).
    image_height: their image height in pixels.
    to_class: object number -> class in [0, num_classes).
    num_classes: number of classes.
    factors: downscaling factors (1 = full resolution).
    steps: CNN training steps per factor.
  """
  size_px = int(1.25 * max((b[2] - b[0]) * image_height
                           for e in examples[:50]
                           for b in e["objects"]["bbox"]))
  results = {}
  for factor in factors:
    side = max(1, size_px // factor)
    rng = np.random.default_rng(factor)
    x, y = {True: [], False: []}, {True: [], False: []}  # by "is train"
    for i, example in enumerate(examples):
      train = i < 0.75 * len(examples)
      pixels = _pooled_pixels(example, factor)
      classes = [to_class(int(n)) for n in example["objects"]["number"]]
      for _ in range(_TRAIN_CROPS if train else 1):
        x[train].append(_crops(pixels, example["objects"]["bbox"], side, rng))
        y[train] += classes
    predictions = cnn_predictions(
        np.concatenate(x[True]), np.array(y[True]), np.concatenate(x[False]),
        num_classes, steps)
    results[factor] = _reading(predictions, np.array(y[False]), side)
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  factors = [int(f) for f in _DOWNSCALES.value]
  names = _GENERATOR_NAMES.value or list(GENERATORS)
  unknown = sorted(set(names) - set(GENERATORS))
  if unknown:
    raise app.UsageError(f"--generators: unknown {unknown}; choose from "
                         f"{sorted(GENERATORS)}.")
  for name in names:
    make_example, spec, to_class, num_classes = GENERATORS[name]
    fn = functools.partial(make_example, spec, 12345, 0)
    examples = list(generation.parallel_map(fn, range(_NUM_IMAGES.value)))
    results = probe(examples, spec.height, to_class, num_classes, factors,
                    _STEPS.value)
    for factor, r in results.items():
      print(f"{name}: downscale {factor}x, crops of {r.crop_px} px: "
            f"accuracy {r.accuracy:.3f}, balanced {r.balanced_accuracy:.3f} "
            f"(majority class {r.majority:.3f}, {r.num_test} test crops)",
            flush=True)


if __name__ == "__main__":
  app.run(main)
