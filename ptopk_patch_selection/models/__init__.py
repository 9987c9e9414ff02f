# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Models: `create_model(config.model, num_classes=..., image_size=...)`.

Every model maps images (b, h, w, c) to `(logits, aux)` when called as
`model.apply(variables, images, train=..., sigma=..., rngs=...,
mutable=["batch_stats"] if train)`, with RNG streams "selection" (Top-K noise,
random patches) and "dropout"; aux is the model's typed output
(`PatchNetOutput`, ...), whose `entropy` is the entropy regulariser's input
and whose `pictures()` are the (b, ...) arrays an evaluation picture draws.
Each model owns its loss: `model.loss(logits, aux, labels)` returns the
scalar training loss and per-example (b,) "cross_entropy" and "accuracy".
The factory and its validation are in `factory.py`.
"""

from ptopk_patch_selection.models.aggregators import TransformerAggregator
from ptopk_patch_selection.models.factory import create_model
from ptopk_patch_selection.models.factory import load_pretrained_feature_network
from ptopk_patch_selection.models.factory import MODEL_NAMES
from ptopk_patch_selection.models.feature_networks import ATSNetwork
from ptopk_patch_selection.models.feature_networks import ResNet
from ptopk_patch_selection.models.ntsnet import NTSNet
from ptopk_patch_selection.models.ntsnet import ntsnet_losses
from ptopk_patch_selection.models.ntsnet import NTSNetOutput
from ptopk_patch_selection.models.patchnet import PatchNet
from ptopk_patch_selection.models.patchnet import PatchNetOutput
from ptopk_patch_selection.models.patchnet import WholeImageClassifier
from ptopk_patch_selection.models.patchnet import WholeImageOutput
from ptopk_patch_selection.models.scorer import Scorer

__all__ = [
    "ATSNetwork", "MODEL_NAMES", "NTSNet", "NTSNetOutput", "PatchNet",
    "PatchNetOutput", "ResNet", "Scorer", "TransformerAggregator",
    "WholeImageClassifier", "WholeImageOutput", "create_model",
    "load_pretrained_feature_network", "ntsnet_losses",
]
