# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""A tiny CPU config for the tests: a few steps on synthetic_traffic_signs/tiny.

  python -m ptopk_patch_selection.tools.build_dataset \
      --dataset=synthetic_traffic_signs/tiny
  python -m ptopk_patch_selection.main --config=configs/test.py \
      --workdir=/tmp/ptopk_test
"""

from ptopk_patch_selection import locations

default = locations.sibling_config(__file__, "default")


def get_config():
  config = default.get_config()
  config.dataset.name = "synthetic_traffic_signs/tiny"  # 16 train, 8 test
  config.dataset.image_size = (128, 128)
  config.dataset.pad_pixels = 4
  config.batch_size = 4
  config.eval_batch_size = 4
  config.model.k = 2
  config.model.patch_size = 32
  config.model.downscale = 4  # 32x32 scorer input, 3x3 grid
  config.model.perturbed.num_samples = 16
  config.num_train_steps = 6
  config.learning_rate = 1e-3
  config.warmup_ratio = 0.0
  config.log_every_steps = 2
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 2
  config.num_image_summaries = 2
  return config
