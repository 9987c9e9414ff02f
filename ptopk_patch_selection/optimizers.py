# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Learning-rate schedules and optimisers from the config.

  adamw: clip -> AdamW with decoupled weight decay scaled by the learning
         rate (optax.adamw). The released code did not scale it (its
         effective AdamW weight decay was 1.0 at lr 1e-4); ours is the usual
         decoupled form of Loshchilov & Hutter.
  sgd:   clip -> L2 weight decay added to the gradient -> SGD with momentum
         (NTS-Net / CUB). The released code added it with the wrong sign,
         which made the weights grow. `sgd_learning_rate`: "after_momentum"
         (ours, optax.sgd: update = -lr(t) * trace, the trace summing raw
         gradients) or "before_momentum" (released: the trace sums
         lr(t) * gradients, so a change of the rate reaches the update only
         through new gradients, not at once).
Parameters whose path ("scorer/Conv_0/kernel") matches the regular
expression `frozen_params` are not updated (no step, no weight decay), as the
released code's freezing by regex. `lr_scales`, ((regex, factor), ...) as the
released `scaling_learning_rate_by_regex`, multiplies the update of the
parameters whose path matches a regex by its factor: their learning rate is
factor x the schedule's (weight decay included, which with both optimisers
scales with the learning rate). The first matching pair applies; frozen
parameters stay frozen.
Schedules: linear warmup over `warmup_ratio` of the steps, then cosine decay
to 0 ("cosine") or a piecewise-constant decay by `decay_factor` at
`decay_at_steps` ("piecewise").
"""

import re

import flax.traverse_util
import ml_collections
import optax

from ptopk_patch_selection import errors

OPTIMIZERS = ("adamw", "sgd")
SGD_LEARNING_RATES = ("after_momentum", "before_momentum")
SCHEDULES = ("cosine", "piecewise")


def create_learning_rate_fn(
    config: ml_collections.ConfigDict) -> optax.Schedule:
  """Learning rate as a function of the step."""
  total = config.num_train_steps
  warmup = int(config.warmup_ratio * total)
  if config.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate,
        warmup_steps=max(warmup, 0), decay_steps=max(total, warmup + 1),
        end_value=0.0)
  if config.schedule == "piecewise":
    decay = optax.piecewise_constant_schedule(
        config.learning_rate,
        {int(step): config.decay_factor for step in config.decay_at_steps})
    if warmup == 0:
      return decay
    ramp = optax.linear_schedule(0.0, 1.0, warmup)
    return lambda step: ramp(step) * decay(step)
  raise ValueError(f"config.schedule={config.schedule!r} is not one of "
                   f"{SCHEDULES}.")


def frozen_labels(pattern: str, scales=()):
  """params -> the same tree of labels, by path: "frozen" (matches
  `pattern`), "lr_scales[i]" (first of the (regex, factor) `scales` that
  matches) or "trained"."""
  regex = re.compile(pattern) if pattern else None
  scaled = [(re.compile(scale_pattern), f"lr_scales[{i}]")
            for i, (scale_pattern, _) in enumerate(scales)]

  def label(path):
    if regex is not None and regex.search(path):
      return "frozen"
    return next((name for scale, name in scaled if scale.search(path)),
                "trained")

  def labels(params):
    flat = flax.traverse_util.flatten_dict(params, sep="/")
    return flax.traverse_util.unflatten_dict(
        {path: label(path) for path in flat}, sep="/")
  return labels


def create_optimizer(config: ml_collections.ConfigDict,
                     learning_rate_fn: optax.Schedule
                     ) -> optax.GradientTransformation:
  """The optax chain of `config.optimizer`, frozen_params excluded and
  lr_scales applied."""
  optimizer = _optimizer(config, learning_rate_fn)
  scales = _lr_scales(config.lr_scales)
  if not config.frozen_params and not scales:
    return optimizer
  transforms = {"trained": optimizer, "frozen": optax.set_to_zero()}
  for i, (_, factor) in enumerate(scales):
    transforms[f"lr_scales[{i}]"] = optax.chain(
        _optimizer(config, learning_rate_fn), optax.scale(factor))
  return optax.multi_transform(
      transforms, frozen_labels(config.frozen_params, scales))


def _lr_scales(scales) -> tuple[tuple[str, float], ...]:
  """config.lr_scales checked: (regex, finite factor >= 0) pairs."""
  checked = []
  for entry in scales:
    try:
      pattern, factor = entry
      re.compile(pattern)
      factor = float(factor)
      ok = isinstance(pattern, str) and factor >= 0 and factor < float("inf")
    except (TypeError, ValueError, re.error):
      ok = False
    if not ok:
      raise errors.ConfigError(
          f"Invalid config: lr_scales entry {entry!r} should be a pair "
          "(regex of parameter paths, factor >= 0), e.g. "
          "lr_scales=(('^scorer/', 0.1),).")
    checked.append((pattern, factor))
  return tuple(checked)


def _optimizer(config, learning_rate_fn):
  clip = (optax.clip(config.gradient_clip) if config.gradient_clip > 0 else
          optax.identity())
  if config.optimizer == "adamw":
    return optax.chain(clip, optax.adamw(learning_rate_fn,
                                         weight_decay=config.weight_decay))
  if config.optimizer == "sgd":
    decay = optax.add_decayed_weights(config.weight_decay)
    if config.sgd_learning_rate == "after_momentum":
      return optax.chain(clip, decay,
                         optax.sgd(learning_rate_fn, momentum=config.momentum))
    if config.sgd_learning_rate == "before_momentum":
      return optax.chain(clip, decay, optax.scale_by_schedule(learning_rate_fn),
                         optax.trace(decay=config.momentum),
                         optax.scale(-1.0))
    raise ValueError(f"config.sgd_learning_rate={config.sgd_learning_rate!r} "
                     f"is not one of {SGD_LEARNING_RATES}.")
  raise ValueError(f"config.optimizer={config.optimizer!r} is not one of "
                   f"{OPTIMIZERS}.")
