# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The experiment configs and their variants: released vs paper settings."""

from configs import billiard
from configs import cub
from configs import default
from configs import traffic
from configs import traffic_cnn
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


def _differences(a, b):
  """{dotted field: (a's value, b's value)} where two configs differ."""
  flat_a, flat_b = (dict(_flatten(c.to_dict())) for c in (a, b))
  return {field: (flat_a[field], flat_b[field]) for field in flat_a
          if flat_a[field] != flat_b[field]}


def _flatten(tree, prefix=""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def test_paper_variants_differ_from_the_released_configs_as_table_6_says():
  """Table 6 vs the released configs (released_code.md 2.2, 2.4)."""
  assert _differences(traffic.get_config(), traffic.get_config("paper")) == {
      "num_train_steps": (70_000, 100_000), "warmup_ratio": (0.1, 0.0)}
  assert _differences(cub.get_config(), cub.get_config("paper")) == {
      "decay_at_steps": ((18780, 25040), (22478, 29970))}
  released = billiard.get_config()  # Table 6 agrees with the release.
  assert (released.num_train_steps, released.warmup_ratio,
          released.schedule) == (30_000, 0.05, "cosine")


def test_log_eval_and_checkpoint_intervals_are_the_released_ones():
  """log_loss_every_steps, eval_every_steps, checkpoint_every_steps."""
  for config, released in ((traffic.get_config(), (50, 1000, 5000)),
                           (traffic_cnn.get_config(), (50, 1000, 5000)),
                           (billiard.get_config(), (100, 1000, 5000)),
                           (cub.get_config(), (100, 5000, 1000))):
    assert (config.log_every_steps, config.eval_every_steps,
            config.checkpoint_every_steps) == released
