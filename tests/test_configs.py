# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The experiment configs and their variants: released vs paper settings."""

from configs import default
from configs import traffic
from ptopk_patch_selection import models


def test_traffic_sinkhorn_variant_is_the_released_operator():
  assert default.get_config().model.sinkhorn.form == "scaled"
  config = traffic.get_config("sinkhorn")
  assert config.model.selection == "sinkhorn"
  assert config.model.sinkhorn.form == "released"
  model = models.create_model(config.model, num_classes=4,
                              image_size=config.dataset.image_size)
  assert model.topk.sinkhorn_form == "released"
  assert (model.topk.sinkhorn_epsilon, model.topk.sinkhorn_iterations) == (
      1e-4, 2000)
