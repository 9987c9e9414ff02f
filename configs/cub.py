# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""CUB-200-2011 (paper section 5.3): NTS-Net with perturbed Top-K.

Paper setting: 448x448 crops of 600x600 resized images (random crop + flip
for training, centre crop for evaluation, values in [-1, 1]), a shared
ResNet-50 on the image and on K=4 part images of 224x224 chosen by a
perturbed Top-K over the 1614 NTS-Net anchors, squeeze-excite communication,
SGD with momentum 0.9, lr 1e-3 with 5% warmup, decayed 10x at 60% and 80% of
training, L2 weight decay 1e-4 (with the right sign, unlike the released
code), batch 16, 31300 steps, sigma 0.05 -> 0, 500 samples, entropy
regulariser 0.05, hard Top-K at evaluation. The paper starts from an
ImageNet ResNet-50: give it as model.pretrained_checkpoint (.npz or Orbax;
see ptopk_patch_selection/models/pretrained.py).

Data: the CUB-200-2011 archive into data/downloads/caltech_birds2011/ (see
data/README.md), then
  python -m ptopk_patch_selection.tools.build_dataset \
      --dataset=caltech_birds2011
Run:
  python -m ptopk_patch_selection.main --config=configs/cub.py \
      --workdir=workdirs/cub --config.model.pretrained_checkpoint=PATH
"""

from ptopk_patch_selection import locations

default = locations.sibling_config(__file__, "default")


def get_config():
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
  config.checkpoint_every_steps = 1000
  config.eval_every_steps = 5000
  return config
