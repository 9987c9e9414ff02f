# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Differentiable Patch Selection for Image Recognition (CVPR 2021) in JAX.

The operators are importable on their own (no TensorFlow, no Flax):

  from ptopk_patch_selection import perturbed_topk, patches
"""

import os as _os

# TensorFlow only reads data here: keep its C++ start-up lines (oneDNN notice,
# absl pre-init warning) out of the terminal and notebooks. Set either
# variable yourself to override.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
