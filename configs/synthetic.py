# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""The embedded default: synthetic traffic signs on a CPU, in minutes.

`./run.sh` builds synthetic_traffic_signs/textures (512x512; 3000 train, 500
test; 4 classes: no coded sign / stripes / stripes across / checkerboard,
among flat look-alike ring signs), pretrains the reader on texture patches
(below) and trains this config. The codes that decide the class vanish at
the scorer's 8x downscale (see data/README.md), so the model has to learn
where to look: K=4 of the 7x7 grid of candidate 96x96 patches, each centred
where its score looked (model.patch_grid).

The reader starts pretrained on a different task, as the paper's CUB runs
start from ImageNet: `python -m ptopk_patch_selection.tools.pretrain_reader`
trains the feature network for 300 steps (about a minute) to tell 8 textures
apart on discs in noise (datasets/texture_patches.py: no scenes, no ring
signs, other classes, periods and orientations) and writes PRETRAINED_READER.
From random initialisation (`configs/synthetic.py:scratch`) whether a seed
learns within 500 steps is a lottery: the reader cannot read before the
scorer finds the signs, and the scorer gets no signal before the reader
reads (docs/learning.md has both tables).

Differences from the paper's traffic config, chosen for a short CPU run:
smaller images and K, the thin ResNet-18 (the ATS network learned far more
slowly on this budget), 100 noise samples, sigma 0.1 decaying to 0, edge
padding of the patches, lr 1e-3, the paper's non-overlapping 8x8 score
windows (the 16x16 "edge" windows put the top-k on one sign:
docs/learning.md), and no entropy regulariser (0.01 learns as well here).
At sigma 0.5 (on scores in [0, 1]) each soft patch blends many candidates
and, from scratch, the reader sees the codes too faint to learn from.
The digits scenes (synthetic_traffic_signs/small) are the hard variant.

  python -m ptopk_patch_selection.tools.pretrain_reader \
      --config=configs/synthetic.py
  python -m ptopk_patch_selection.main --config=configs/synthetic.py \
      --workdir=data/workdirs/synthetic
"""

from ptopk_patch_selection import locations

default = locations.sibling_config(__file__, "default")

VARIANTS = ("", "scratch")
# Written by `python -m ptopk_patch_selection.tools.pretrain_reader`
# (./run.sh runs it when the file is missing); relative to the root.
PRETRAINED_READER = "data/pretrained/textures_resnet18_thin.npz"


def get_config(variant: str = ""):
  """The embedded default; `scratch`: reader and scorer from random init."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of "
                     f"{VARIANTS}.")
  config = default.get_config()
  config.dataset.name = "synthetic_traffic_signs/textures"
  config.dataset.image_size = (512, 512)
  config.dataset.num_classes = 4
  config.dataset.augmentation = "traffic"
  config.dataset.pad_pixels = 32  # signs stay >= 48 px from the border
  config.batch_size = 16
  config.eval_batch_size = 50

  config.model.k = 4
  config.model.patch_size = 96
  config.model.downscale = 8  # 64x64 scorer input, 7x7 grid
  config.model.scorer_padding = "valid"
  config.model.patch_padding = "edge"
  config.model.patch_grid = "scorer"
  config.model.feature_network = "resnet18_thin"
  config.model.stem_gradient = "phases"  # the step 1.3x faster on CPUs
  config.model.pretrained_checkpoint = PRETRAINED_READER
  config.model.aggregator = "mean"
  config.model.train_patches = "soft"
  config.model.perturbed.num_samples = 100
  config.sigma = 0.1
  config.sigma_end = 0.0
  config.entropy_regularizer = 0.0

  config.learning_rate = 1e-3
  config.weight_decay = 1e-4
  config.gradient_clip = 1.0
  config.warmup_ratio = 0.05
  config.num_train_steps = 500
  config.log_every_steps = 10
  config.eval_every_steps = 200  # each evaluation (500 images) takes ~10 s
  config.checkpoint_every_steps = 200
  if variant == "scratch":
    config.model.pretrained_checkpoint = ""
  return config
