# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Differentiable Patch Selection for Image Recognition (CVPR 2021) in JAX.

The operators are importable on their own (no TensorFlow, no Flax):

  from ptopk_patch_selection import perturbed_topk, patches
"""
