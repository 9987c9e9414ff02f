# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""Traffic signs, full-image CNN baseline (paper section 5.1).

The ATS feature network on the whole 960x1280 image, no patch selection.
The paper reports that it overfits: 100% training accuracy, test accuracy no
better than the majority class. Released setting: lr 1e-4, clipping 1.0, no
warmup, 70k steps, batch 32.

  python -m ptopk_patch_selection.main --config=configs/traffic_cnn.py \
      --workdir=workdirs/traffic_cnn
Sweep (released): seeds 0-4 x learning rates {1e-3, 5e-4, 1e-4, 5e-5}:
  python -m ptopk_patch_selection.sweep --config=configs/traffic_cnn.py \
      --workdir=workdirs/traffic_cnn_sweep
"""

from ptopk_patch_selection import locations

traffic = locations.sibling_config(__file__, "traffic")


def get_config():
  config = traffic.get_config()
  config.model.name = "whole_image"
  config.gradient_clip = 1.0
  config.warmup_ratio = 0.0
  config.entropy_regularizer = 0.0
  return config


def get_sweep():
  """The released sweep: 5 seeds x 4 learning rates (see
  ptopk_patch_selection/sweep.py)."""
  return [{"seed": seed, "learning_rate": learning_rate}
          for seed in range(5) for learning_rate in (1e-3, 5e-4, 1e-4, 5e-5)]
