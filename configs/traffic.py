# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""Swedish traffic signs (paper section 5.1): PatchNet with perturbed Top-K.

Paper setting: 960x1280 images, scorer on the image downscaled 3x (39x52 =
2028 candidate patches), K=5 patches of 100x100, the ATS feature network,
mean pooling, AdamW lr 1e-4 with decoupled weight decay 1e-4, batch 32, 70k
steps with 10% warmup then cosine decay (the released config; the paper's
Table 6 says 100k steps of cosine decay with no warmup: variant `paper`),
gradient clipping 0.1, sigma 0.05 decaying linearly to 0, 500 samples,
entropy regulariser 0.01, hard Top-K at evaluation. Train = set1 (747),
test = set2 (684). The gradient is the exact perturbed-optimizer gradient,
estimated with the conditional estimator (configs/default.py); the released
code used the biased diagonal form (variant `diagonal`).

Data: download the Swedish Traffic Signs files into data/downloads/
traffic_signs/ (see data/README.md), then
  python -m ptopk_patch_selection.tools.build_dataset \
      --dataset=traffic_signs/ats
Run:
  python -m ptopk_patch_selection.main --config=configs/traffic.py \
      --workdir=workdirs/traffic
Variants (`--config=configs/traffic.py:VARIANT`):
  random    random patches instead of the scorer (baseline);
  sinkhorn  the optimal-transport Top-K of the appendix as released
            (targets 0..k, fixed eps 1e-4, 2000 iterations; docs/operator.md);
  diagonal  the released code's (biased) gradient, for comparison;
  paper     Table 6's schedule instead of the released one: 100k steps,
            cosine decay, no warmup.
The full-image CNN baseline is configs/traffic_cnn.py.
"""

from ptopk_patch_selection import locations

default = locations.sibling_config(__file__, "default")

VARIANTS = ("", "random", "sinkhorn", "diagonal", "paper")


def get_config(variant: str = ""):
  """The paper's traffic-sign config, or one of its VARIANTS."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of "
                     f"{VARIANTS}.")
  config = default.get_config()
  config.dataset.name = "traffic_signs/ats"
  config.dataset.image_size = (960, 1280)
  config.dataset.num_classes = 4
  config.dataset.augmentation = "traffic"
  config.dataset.pad_pixels = 100
  config.batch_size = 32
  config.eval_batch_size = 32

  config.model.k = 5
  config.model.patch_size = 100
  config.model.downscale = 3
  config.model.feature_network = "ats_traffic"
  config.model.aggregator = "mean"
  config.model.perturbed.num_samples = 500
  config.sigma = 0.05
  config.entropy_regularizer = 0.01

  config.optimizer = "adamw"
  config.learning_rate = 1e-4
  config.weight_decay = 1e-4
  config.gradient_clip = 0.1
  config.warmup_ratio = 0.1
  config.num_train_steps = 70_000
  if variant == "random":
    config.model.selection = "random"
    config.model.selection_eval = "random"
  elif variant == "sinkhorn":
    config.model.selection = "sinkhorn"
    config.model.sinkhorn.form = "released"
  elif variant == "diagonal":
    config.model.perturbed.gradient = "diagonal"  # the released estimator
    config.model.perturbed.variance_reduction = "none"
  elif variant == "paper":
    config.num_train_steps = 100_000
    config.warmup_ratio = 0.0
  return config
