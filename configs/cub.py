# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""CUB-200-2011 (paper section 5.3): NTS-Net with perturbed Top-K.

Paper setting: 448x448 crops of 600x600 resized images (random crop + flip
for training, centre crop for evaluation, values in [-1, 1]), a shared
ResNet-50 on the image and on K=4 part images of 224x224 chosen by a
perturbed Top-K over the 1614 NTS-Net anchors, squeeze-excite communication,
SGD with momentum 0.9, lr 1e-3 with 5% warmup, decayed 10x at 60% and 80% of
training (steps 18780 and 25040, epochs 50.1 and 66.8 at 374.6 steps per
epoch: the released config; the paper's Table 6 says at epochs 60 and 80,
steps 22478 and 29970: variant `paper`), L2 weight decay 1e-4 (with the
right sign, unlike the released code), batch 16, 31300 steps, sigma 0.05 ->
0, 500 samples, entropy regulariser 0.05, hard Top-K at evaluation. The
paper starts from an ImageNet ResNet-50: give it as
model.pretrained_checkpoint (.npz or Orbax; see
ptopk_patch_selection/models/pretrained.py).

Data: the CUB-200-2011 archive into data/downloads/caltech_birds2011/ (see
data/README.md), then
  python -m ptopk_patch_selection.tools.build_dataset \
      --dataset=caltech_birds2011
Run:
  python -m ptopk_patch_selection.main --config=configs/cub.py \
      --workdir=workdirs/cub --config.model.pretrained_checkpoint=PATH
Sweep (released): k in {2, 4} x seeds {3, 5, 7, 9, 11}, one command each:
  python -m ptopk_patch_selection.sweep --config=configs/cub.py \
      --workdir=workdirs/cub_sweep
Variants (`--config=configs/cub.py:VARIANT`):
  paper      Table 6's decay epochs (above);
  train_val  the released train-val mode: train on the first 5000 images of
             the TFDS train split (in stored order), evaluate on the other
             994 (TFDS split slicing "train[:5000]" / "train[5000:]"), to
             choose settings without the test split.
"""

from ptopk_patch_selection import locations

default = locations.sibling_config(__file__, "default")

VARIANTS = ("", "paper", "train_val")
TRAIN_IMAGES = 5994  # the CUB-200-2011 training split
TRAIN_VAL_IMAGES = 5000  # train_val: training images; the rest evaluate


def get_config(variant: str = ""):
  """The released CUB config, or one of its VARIANTS."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of "
                     f"{VARIANTS}.")
  config = default.get_config()
  config.dataset.name = "caltech_birds2011"
  config.dataset.image_size = (448, 448)
  config.dataset.num_classes = 200
  config.dataset.augmentation = "cub"
  config.dataset.resize = 600
  config.batch_size = 16
  config.eval_batch_size = 16

  config.model.name = "ntsnet"
  config.model.feature_network = "resnet50"
  config.model.k = 4
  config.model.perturbed.num_samples = 500
  config.model.ntsnet.communication = "squeeze_excite_d"
  config.sigma = 0.05
  config.entropy_regularizer = 0.05

  config.optimizer = "sgd"
  config.learning_rate = 1e-3
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.gradient_clip = 0.0
  config.schedule = "piecewise"
  config.decay_at_steps = (18780, 25040)
  config.decay_factor = 0.1
  config.warmup_ratio = 0.05
  config.num_train_steps = 31_300
  config.log_every_steps = 100  # the released intervals
  config.checkpoint_every_steps = 1000
  config.eval_every_steps = 5000
  if variant == "paper":
    steps_per_epoch = TRAIN_IMAGES / config.batch_size
    config.decay_at_steps = tuple(round(epoch * steps_per_epoch)
                                  for epoch in (60, 80))
  elif variant == "train_val":
    config.dataset.train_split = f"train[:{TRAIN_VAL_IMAGES}]"
    config.dataset.eval_split = f"train[{TRAIN_VAL_IMAGES}:]"
  return config


def get_sweep():
  """The released sweep: k in {2, 4} x 5 seeds (ptopk_patch_selection/sweep.py
  prints one command per point)."""
  return [{"model.k": k, "seed": seed}
          for k in (2, 4) for seed in (3, 5, 7, 9, 11)]
