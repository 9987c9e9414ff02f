# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
r"""The relational billiard task on generated data (a long run).

synthetic_billiard/paper: 1000x1000 tables with 4-8 numbered balls; label =
max(number of the leftmost ball, number of the rightmost ball) - 1 (9
classes); 8000 train / 2000 valid / 10000 test. The model is the paper's
billiard model (configs/billiard.py): K=10 patches of 100 px, scorer at 4x
downscale, ResNet-18, transformer aggregator. It needs far more training than
a CPU gives in minutes: use an accelerator.

  python -m ptopk_patch_selection.tools.build_dataset \
      --dataset=synthetic_billiard/paper
  python -m ptopk_patch_selection.main \
      --config=configs/synthetic_billiard.py --workdir=workdirs/sbilliard
Variant `:mean` uses mean pooling instead of the transformer.
"""

from ptopk_patch_selection import locations

billiard = locations.sibling_config(__file__, "billiard")

VARIANTS = ("", "mean")


def get_config(variant: str = ""):
  """Billiard model on synthetic_billiard/paper; `mean`: mean pooling."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; expected one of "
                     f"{VARIANTS}.")
  config = billiard.get_config(variant)
  config.dataset.name = "synthetic_billiard/paper"
  config.dataset.eval_split = "test"
  return config
