# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Feature networks: patches (n, p, p, c) -> pooled features (n, D).

  * "ats_traffic": the thin pre-activation ResNet of ATS (Katharopoulos and
    Fleuret 2019) used for traffic signs; D = 32.
  * "resnet18": ResNet-18 (BasicBlock (2, 2, 2, 2), 64 filters); D = 512.
  * "resnet18_thin": ResNet-18 with 16 filters (the paper's appendix); D = 128.
  * "resnet50": ResNet-50 v1.5 (Bottleneck (3, 4, 6, 3), stride on the 3x3,
    zero-initialised last BatchNorm scale of each block); D = 2048.

BatchNorm everywhere (momentum 0.9, epsilon 1e-5, running averages at
evaluation). Under `jax.jit` with batch-sharded inputs the batch statistics
are global, so there is no `axis_name`. The ResNet stem (`stem`):
  * "standard" (ours): conv 7x7/2 with padding (3, 3) -> BN -> ReLU ->
    max-pool 3x3/2 with padding (1, 1);
  * "released": as the released code, for its (or TF-converted) weights:
    TF "SAME" padding ((2, 3) for the conv and (0, 1) for the pool on even
    sides), stem BN momentum 0.99 (the old Flax default), and no ReLU.

`stem_gradient="phases"` computes the standard stem's input gradients by
the parity of the input pixel (phase_conv.py): the convolution's as one
stride-1 convolution to the 4 parities, the max-pool's by comparing its 9
window offsets on the output grid; several times faster on CPUs, same
parameters and outputs, gradients equal up to rounding.

Every network takes `pool=False` to return the last feature map instead of
its spatial mean (NTS-Net needs the map).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax

from ptopk_patch_selection.models import phase_conv

_Conv = functools.partial(nn.Conv, use_bias=False)


def _batch_norm(train: bool, **kwargs) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, **kwargs)


class BasicBlock(nn.Module):
  """ResNet v1 basic block: 3x3 -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU."""
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = _Conv(self.filters, (3, 3), self.strides, name="conv1")(x)
    y = nn.relu(_batch_norm(train, name="bn1")(y))
    y = _Conv(self.filters, (3, 3), name="conv2")(y)
    y = _batch_norm(train, name="bn2")(y)
    if x.shape[-1] != self.filters or self.strides != 1:
      x = _Conv(self.filters, (1, 1), self.strides, name="proj_conv")(x)
      x = _batch_norm(train, name="proj_bn")(x)
    return nn.relu(x + y)


class BottleneckBlock(nn.Module):
  """ResNet v1.5 bottleneck: 1x1 -> 3x3 (strided) -> 1x1 (4x), zero-init BN."""
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    y = _Conv(self.filters, (1, 1), name="conv1")(x)
    y = nn.relu(_batch_norm(train, name="bn1")(y))
    y = _Conv(self.filters, (3, 3), self.strides, name="conv2")(y)
    y = nn.relu(_batch_norm(train, name="bn2")(y))
    y = _Conv(4 * self.filters, (1, 1), name="conv3")(y)
    y = _batch_norm(train, name="bn3", scale_init=nn.initializers.zeros)(y)
    if x.shape[-1] != 4 * self.filters or self.strides != 1:
      x = _Conv(4 * self.filters, (1, 1), self.strides, name="proj_conv")(x)
      x = _batch_norm(train, name="proj_bn")(x)
    return nn.relu(x + y)


RESNET_STEMS = ("standard", "released")
# How the standard stem's input gradients are computed: "xla" (the layers'
# own) or "phases" (by input parity, phase_conv.py; faster on CPUs).
STEM_GRADIENTS = ("xla", "phases")


class ResNet(nn.Module):
  """ResNet v1: stem, then stages of blocks of width num_filters * 2^stage."""
  stage_sizes: Sequence[int]
  block_cls: type[nn.Module]
  num_filters: int = 64
  stem: str = "standard"  # RESNET_STEMS, module docstring
  stem_gradient: str = "xla"  # STEM_GRADIENTS; "phases": standard stem only

  def __post_init__(self):
    if self.stem not in RESNET_STEMS:
      raise ValueError(f"stem={self.stem!r} is not one of {RESNET_STEMS}.")
    if self.stem_gradient not in STEM_GRADIENTS:
      raise ValueError(f"stem_gradient={self.stem_gradient!r} is not one of "
                       f"{STEM_GRADIENTS}.")
    if self.stem_gradient == "phases" and self.stem != "standard":
      raise ValueError('stem_gradient="phases" needs the "standard" stem '
                       f"(symmetric padding), not {self.stem!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool,
               pool: bool = True) -> jax.Array:
    released = self.stem == "released"
    if self.stem_gradient == "phases":
      x = phase_conv.PhaseGradientConv(self.num_filters, 7, 3,
                                       name="stem_conv")(x)
    else:
      x = _Conv(self.num_filters, (7, 7), 2,
                padding="SAME" if released else ((3, 3), (3, 3)),
                name="stem_conv")(x)
    if released:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.99,
                       epsilon=1e-5, name="stem_bn")(x)
    else:
      x = nn.relu(_batch_norm(train, name="stem_bn")(x))
    if self.stem_gradient == "phases":
      x = phase_conv.max_pool_3x3_stride2(x)
    else:
      x = nn.max_pool(x, (3, 3), strides=(2, 2),
                      padding="SAME" if released else ((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = self.block_cls(self.num_filters * 2**stage, strides,
                           name=f"stage{stage + 1}_block{block + 1}")(
                               x, train=train)
    return x.mean(axis=(1, 2)) if pool else x


class PreActBasicBlock(nn.Module):
  """ATS's pre-activation block (BasicBlockv2).

  a = relu(BN(x)); out = shortcut(a) + conv3x3(relu(BN(conv3x3_s(a)))), where
  the shortcut is `a` itself, or a strided 1x1 convolution of `a` when the
  shape changes (both take the pre-activated input, as in ATS).
  """
  filters: int
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    a = nn.relu(_batch_norm(train, name="bn1")(x))
    shortcut = a
    if x.shape[-1] != self.filters or self.strides != 1:
      shortcut = _Conv(self.filters, (1, 1), self.strides,
                       name="proj_conv")(a)
    y = _Conv(self.filters, (3, 3), self.strides, name="conv1")(a)
    y = nn.relu(_batch_norm(train, name="bn2")(y))
    y = _Conv(self.filters, (3, 3), name="conv2")(y)
    return shortcut + y


class ATSNetwork(nn.Module):
  """ATS traffic-sign feature network: conv3x3, 3 pre-act blocks, BN, ReLU."""
  filters: int = 32
  strides: Sequence[int] = (2, 2, 2)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool,
               pool: bool = True) -> jax.Array:
    x = _Conv(self.filters, (3, 3), name="stem_conv")(x)
    for block, strides in enumerate(self.strides):
      x = PreActBasicBlock(self.filters, strides, name=f"block{block + 1}")(
          x, train=train)
    x = nn.relu(_batch_norm(train, name="final_bn")(x))
    return x.mean(axis=(1, 2)) if pool else x


FEATURE_NETWORKS = {
    "ats_traffic": ATSNetwork,
    "resnet18": functools.partial(ResNet, (2, 2, 2, 2), BasicBlock, 64),
    "resnet18_thin": functools.partial(ResNet, (2, 2, 2, 2), BasicBlock, 16),
    "resnet50": functools.partial(ResNet, (3, 4, 6, 3), BottleneckBlock, 64),
}

# Networks whose last map has stride 32 (what NTS-Net's anchors assume).
STRIDE_32_NETWORKS = ("resnet18", "resnet18_thin", "resnet50")


def feature_network(name: str, resnet_stem: str = "standard",
                    stem_gradient: str = "xla") -> nn.Module:
  """A fresh feature network by name (one of FEATURE_NETWORKS).

  `resnet_stem` and `stem_gradient` are the ResNets' `stem` (RESNET_STEMS)
  and `stem_gradient` (STEM_GRADIENTS). Other networks ignore `resnet_stem`
  (as before); a `stem_gradient` other than "xla" is an error for them.
  """
  if name not in FEATURE_NETWORKS:
    raise ValueError(f"Unknown feature network {name!r}; expected one of "
                     f"{sorted(FEATURE_NETWORKS)}.")
  if resnet_stem not in RESNET_STEMS:
    raise ValueError(f"resnet_stem={resnet_stem!r} is not one of "
                     f"{RESNET_STEMS}.")
  make = FEATURE_NETWORKS[name]
  # Built here rather than cloned, so that the module binds to the compact
  # method it is created in (a clone made there has no parent).
  if getattr(make, "func", None) is ResNet:
    return make(stem=resnet_stem, stem_gradient=stem_gradient)
  if stem_gradient != "xla":
    raise ValueError(f"stem_gradient={stem_gradient!r} needs a ResNet; "
                     f"{name!r} has no ResNet stem.")
  return make()
