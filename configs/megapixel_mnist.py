# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""Megapixel MNIST from real handwriting: the majority digit of 5.

The benchmark of Attention Sampling (ATS, ICML 2019) and IPS (ICLR 2023):
datasets/megapixel_mnist.py. Every variant here runs ATS's task, the
`label` feature (the digit that appears 3 times among 5); IPS's max / top /
multi labels are stored in the dataset but not trained on here.

Variant (after the colon), comma-separated tokens:
  ""         paper scale, for an accelerator: megapixel_mnist/paper
             (1500x1500), scorer at 1/6 (250x250, near ATS's 0.12 scale),
             a 30x30 grid of 50 px patches at stride 48 (IPS: 900 patches of
             50 px at stride 50), K=10 (ATS samples 10 patches), ResNet-18
             from random initialisation and batch 16 (IPS), mean aggregator.
  cpu        megapixel_mnist/cpu (512x512) on a CPU, in minutes: the
             embedded default's geometry (configs/synthetic.py: scorer at
             1/8, 7x7 grid of 96 px patches centred on their score cells, so
             a 28 px digit lies whole in the patch of the cell holding its
             centre; the dataset keeps digits where the patches reach), K=7
             (K=5 left digits unread: the scorer also picks scribbles and
             one digit twice), batch 8 for 3200 steps (9-14 minutes on a
             2-core CPU, by its speed), the thin ResNet-18
             pretrained on texture patches (not MNIST:
             tools/pretrain_reader.py) with the phase stem gradient.
             docs/megapixel_mnist.md has every measured run.
  smoke      cpu on megapixel_mnist/smoke (no scribbles): a setup check.
  scratch    the reader from random initialisation.
  random     K random patches in training and evaluation (no scorer).
  downscaled_cnn  the feature network on the whole image downscaled as
             the scorer's input (no patches).
  max, transformer  the aggregator (default mean).

  python -m ptopk_patch_selection.tools.build_dataset \
      --dataset=megapixel_mnist/cpu
  python -m ptopk_patch_selection.main \
      --config=configs/megapixel_mnist.py:cpu --workdir=data/workdirs/mnist
"""

from ptopk_patch_selection import locations

default = locations.sibling_config(__file__, "default")
synthetic = locations.sibling_config(__file__, "synthetic")

SCALES = ("cpu", "smoke")
MODIFIERS = ("scratch", "random", "downscaled_cnn", "max", "transformer")


def _tokens(variant: str) -> list[str]:
  tokens = [t for t in variant.split(",") if t]
  unknown = [t for t in tokens if t not in SCALES + MODIFIERS]
  if unknown or sum(t in SCALES for t in tokens) > 1:
    raise ValueError(
        f"Unknown variant {variant!r}: expected comma-separated tokens, at "
        f"most one of {SCALES} and any of {MODIFIERS}.")
  return tokens


def get_config(variant: str = ""):
  """The paper-scale config, or a variant (module docstring)."""
  tokens = _tokens(variant)
  config = default.get_config()
  config.dataset.num_classes = 10
  config.dataset.augmentation = "none"  # digits may touch the border
  config.model.normalization = "minmax"
  config.model.patch_grid = "scorer"
  config.model.scorer_padding = "valid"
  config.model.patch_padding = "constant"  # the canvas is black
  config.model.aggregator = "mean"
  config.model.train_patches = "soft"
  config.entropy_regularizer = 0.0
  config.weight_decay = 1e-4
  config.gradient_clip = 1.0
  config.warmup_ratio = 0.05
  if "cpu" in tokens or "smoke" in tokens:
    config.dataset.name = "megapixel_mnist/" + (
        "cpu" if "cpu" in tokens else "smoke")
    config.dataset.image_size = (512, 512)
    config.batch_size = 8  # more updates per minute than 16 (docs)
    config.eval_batch_size = 50
    config.model.k = 7
    config.model.patch_size = 96
    config.model.downscale = 8
    config.model.feature_network = "resnet18_thin"
    config.model.stem_gradient = "phases"  # a quarter less time per step
    config.model.pretrained_checkpoint = synthetic.PRETRAINED_READER
    config.model.perturbed.num_samples = 100
    config.sigma = 0.1
    config.learning_rate = 1e-3
    config.num_train_steps = 3200
    config.log_every_steps = 50
    config.eval_every_steps = 640
    config.checkpoint_every_steps = 640
  else:
    config.dataset.name = "megapixel_mnist/paper"
    config.dataset.image_size = (1500, 1500)
    config.batch_size = 16
    config.eval_batch_size = 16
    config.model.k = 10
    config.model.patch_size = 50
    config.model.downscale = 6
    config.model.feature_network = "resnet18"
    config.model.perturbed.num_samples = 500
    config.sigma = 0.1
    config.learning_rate = 1e-3
    config.num_train_steps = 50_000  # 160 epochs of 5000 images
    config.eval_every_steps = 2500
    config.checkpoint_every_steps = 2500
  if "scratch" in tokens:
    config.model.pretrained_checkpoint = ""
  if "random" in tokens:
    config.model.selection = "random"
    config.model.selection_eval = "random"
  if "downscaled_cnn" in tokens:
    config.model.name = "whole_image"
    config.model.whole_image_downscale = config.model.downscale
  for aggregator in ("max", "transformer"):
    if aggregator in tokens:
      config.model.aggregator = aggregator
  return config
