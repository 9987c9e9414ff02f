# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Training and evaluation: `train_and_evaluate(config, workdir)`.

One `jax.jit` train step over a mesh of all devices: the batch is sharded
along the mesh axis "data", parameters and optimiser state are replicated
(XLA inserts the gradient all-reduce; BatchNorm statistics are over the global
batch). With several processes each reads its own rows of every global batch
(`input_pipeline`) and `jax.make_array_from_process_local_data` assembles the
global array.

Everything random is a pure function of (seed, step): the data order and
augmentation (input pipeline), the selection noise and dropout
(fold_in(seed, step)), and sigma, which decays linearly from `config.sigma`
to `config.sigma_end`. An Orbax checkpoint therefore only holds the step,
parameters, BatchNorm statistics and optimiser state, and a restored run
continues exactly as an uninterrupted one.

A step whose loss or gradient is not finite is not applied (parameters and
optimiser state stay as they were) and is counted; after
`config.max_nonfinite_steps` such steps in a row the run stops with an error.
No non-finite value is ever checkpointed.
"""

import os
import re
from typing import Any

from absl import logging
from clu import metric_writers
from clu import metrics
from clu import parameter_overview
from clu import periodic_actions
import flax
import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from ptopk_patch_selection import checkpoints
from ptopk_patch_selection import console
from ptopk_patch_selection import errors
from ptopk_patch_selection import input_pipeline
from ptopk_patch_selection import models
from ptopk_patch_selection import optimizers
from ptopk_patch_selection import visualization
from ptopk_patch_selection import workdir_files

DATA_AXIS = "data"


@flax.struct.dataclass
class TrainState:
  """What a checkpoint holds; everything else derives from (seed, step)."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  nonfinite_steps: jax.Array  # consecutive skipped steps


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  cross_entropy: metrics.Average.from_output("cross_entropy")
  accuracy: metrics.Average.from_output("accuracy")
  entropy: metrics.Average.from_output("entropy")
  sigma: metrics.LastValue.from_output("sigma")
  learning_rate: metrics.LastValue.from_output("learning_rate")
  gradient_norm: metrics.Average.from_output("gradient_norm")
  skipped_steps: metrics.Average.from_output("skipped")


def sigma_at(config: ml_collections.ConfigDict, step: jax.Array) -> jax.Array:
  """Noise scale of train step `step`: linear from sigma to sigma_end."""
  progress = jnp.asarray(step, jnp.float32) / config.num_train_steps
  return config.sigma + (config.sigma_end - config.sigma) * progress


def step_rngs(config: ml_collections.ConfigDict, step: jax.Array,
              stream: int = 0) -> dict[str, jax.Array]:
  """The model's RNG streams for one step (stream 1 for evaluation)."""
  key = jax.random.fold_in(jax.random.fold_in(
      jax.random.key(config.seed), stream), step)
  selection, dropout = jax.random.split(key)
  return {"selection": selection, "dropout": dropout}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails at start, naming the field, on settings that cannot work.

  The model's fields are checked by `models.create_model`.
  """
  def check(condition, message):
    if not condition:
      raise errors.ConfigError(f"Invalid config: {message}")

  check(config.sigma >= 0, f"sigma={config.sigma} must be >= 0.")
  check(config.sigma_end >= 0, f"sigma_end={config.sigma_end} must be >= 0.")
  check(config.sigma_eval is None or config.sigma_eval >= 0,
        f"sigma_eval={config.sigma_eval} must be >= 0 (or None: the current "
        "training sigma).")
  try:
    re.compile(config.frozen_params)
  except re.error as e:
    check(False, f"frozen_params={config.frozen_params!r} is not a regular "
          f"expression ({e}).")
  check(config.num_train_steps >= 1,
        f"num_train_steps={config.num_train_steps} must be >= 1.")
  for field in ("batch_size", "eval_batch_size"):
    value = config[field]
    check(value >= 1 and value % jax.device_count() == 0,
          f"{field}={value} must be a positive multiple of the "
          f"{jax.device_count()} devices.")
  for field in ("log_every_steps", "eval_every_steps",
                "checkpoint_every_steps", "max_nonfinite_steps"):
    check(config[field] >= 1, f"{field}={config[field]} must be >= 1.")
  check(config.optimizer in optimizers.OPTIMIZERS,
        f"optimizer={config.optimizer!r} is not one of "
        f"{optimizers.OPTIMIZERS}.")
  check(config.schedule in optimizers.SCHEDULES,
        f"schedule={config.schedule!r} is not one of {optimizers.SCHEDULES}.")


def _coverage(aux, batch, grid) -> tuple[jax.Array, jax.Array]:
  """(covered, has_target) per example, both float (b,).

  covered: a selected patch contains the centre of the example's target
  object (the one that decides the label).
  """
  h, w = grid.image_size
  boxes = batch["boxes"]  # (b, m, 4) normalised (ymin, xmin, ymax, xmax)
  centre_y = (boxes[..., 0] + boxes[..., 2]) / 2 * h  # (b, m)
  centre_x = (boxes[..., 1] + boxes[..., 3]) / 2 * w
  top, left = grid.corners(aux.indices)  # (b, k)
  p = grid.patch_size
  inside = ((centre_y[:, :, None] >= top[:, None]) &
            (centre_y[:, :, None] < top[:, None] + p) &
            (centre_x[:, :, None] >= left[:, None]) &
            (centre_x[:, :, None] < left[:, None] + p))  # (b, m, k)
  target = batch["is_target"] & batch["box_mask"] & batch["mask"][:, None]
  covered = (inside.any(-1) & target).any(-1)
  return covered.astype(jnp.float32), target.any(-1).astype(jnp.float32)


class Trainer:
  """The model, optimiser and jitted steps of one experiment."""

  def __init__(self, config: ml_collections.ConfigDict, num_classes: int,
               mesh: Mesh):
    self.config = config
    self.num_classes = num_classes
    self.image_size = tuple(config.dataset.image_size)
    self.model = models.create_model(config.model, num_classes=num_classes,
                                     image_size=self.image_size)
    # Models that select patches say where their candidates lie.
    self.grid = (self.model.candidate_grid(self.image_size)
                 if hasattr(self.model, "candidate_grid") else None)
    self.learning_rate_fn = optimizers.create_learning_rate_fn(config)
    self.tx = optimizers.create_optimizer(config, self.learning_rate_fn)
    self.replicated = NamedSharding(mesh, PartitionSpec())
    self.sharded = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    self.train_step = jax.jit(self._train_step, donate_argnums=(0,),
                              out_shardings=self.replicated)
    self.eval_step = jax.jit(self._eval_step, out_shardings=self.replicated)

  def create_state(self) -> TrainState:
    """A fresh state with the pretrained feature network, if configured."""
    return self._load_pretrained(self._initial_state())

  def restore_or_create_state(self, manager: ocp.CheckpointManager, *,
                              set_aside_unreadable: bool = True
                              ) -> TrainState:
    """The newest readable checkpoint of `manager`, else `create_state()`.

    A checkpoint holds every parameter, so the pretrained file is read only
    for a fresh run: a workdir resumes without it (copied to another
    machine, say). See `checkpoints.restore_latest` for unreadable steps.
    """
    initial = self._initial_state()
    state = checkpoints.restore_latest(
        manager, initial, set_aside_unreadable=set_aside_unreadable)
    return self._load_pretrained(state) if state is initial else state

  def _initial_state(self) -> TrainState:
    """Randomly initialised state, replicated over the mesh."""
    def init():
      images = jnp.zeros((1,) + self.image_size + (3,), jnp.float32)
      rngs = step_rngs(self.config, 0) | {
          "params": jax.random.key(self.config.seed)}
      variables = self.model.init(rngs, images, train=False)
      params = variables["params"]
      return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                        batch_stats=variables.get("batch_stats", {}),
                        opt_state=self.tx.init(params),
                        nonfinite_steps=jnp.zeros((), jnp.int32))
    return jax.jit(init, out_shardings=self.replicated)()

  def _load_pretrained(self, state: TrainState) -> TrainState:
    if not self.config.model.pretrained_checkpoint:
      return state
    variables = models.load_pretrained_feature_network(
        {"params": state.params, "batch_stats": state.batch_stats},
        self.config.model)
    return jax.device_put(state.replace(
        params=variables["params"], batch_stats=variables["batch_stats"]),
                          self.replicated)

  def global_batch(self, local_batch: dict[str, np.ndarray]):
    """This process's rows -> global arrays sharded along the batch."""
    return {key: jax.make_array_from_process_local_data(self.sharded, value)
            for key, value in local_batch.items()}

  def _loss(self, params, batch_stats, batch, rngs, sigma):
    (logits, aux), updates = self.model.apply(
        {"params": params, "batch_stats": batch_stats}, batch["image"],
        train=True, sigma=sigma, rngs=rngs, mutable=["batch_stats"])
    model_loss, per_example = self.model.loss(logits, aux, batch["label"])
    # The regulariser maximises the entropy of softmax(raw scores).
    loss = model_loss - self.config.entropy_regularizer * aux.entropy
    outputs = {name: value.mean() for name, value in per_example.items()}
    outputs["entropy"] = aux.entropy
    return loss, (outputs, updates.get("batch_stats", {}))

  def _train_step(self, state: TrainState, batch):
    """One optimiser step; not applied if anything is non-finite."""
    sigma = sigma_at(self.config, state.step)
    grad_fn = jax.value_and_grad(self._loss, has_aux=True)
    (loss, (outputs, batch_stats)), grads = grad_fn(
        state.params, state.batch_stats, batch,
        step_rngs(self.config, state.step), sigma)
    gradient_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(gradient_norm)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    def keep_if_finite(new, old):
      return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

    new_state = TrainState(
        step=state.step + 1,
        params=keep_if_finite(params, state.params),
        batch_stats=keep_if_finite(batch_stats, state.batch_stats),
        opt_state=keep_if_finite(opt_state, state.opt_state),
        nonfinite_steps=jnp.where(finite, 0, state.nonfinite_steps + 1))
    step_metrics = TrainMetrics.single_from_model_output(
        loss=loss, sigma=sigma, gradient_norm=gradient_norm,
        learning_rate=self.learning_rate_fn(state.step),
        skipped=1.0 - finite.astype(jnp.float32), **outputs)
    return new_state, step_metrics

  def _eval_step(self, state: TrainState, batch, batch_index):
    """Sums over the valid rows of one eval batch, and picture data.

    Random draws at evaluation (random patches, perturbed Top-K with
    `sigma_eval`, or the current training sigma when it is unset) depend on
    the seed and the batch's position in the eval split only, so every
    evaluation of a run sees the same ones.
    """
    sigma = (sigma_at(self.config, state.step)
             if self.config.sigma_eval is None else self.config.sigma_eval)
    logits, aux = self.model.apply(
        {"params": state.params, "batch_stats": state.batch_stats},
        batch["image"], train=False, sigma=sigma,
        rngs=step_rngs(self.config, batch_index, stream=1))
    mask = batch["mask"].astype(jnp.float32)
    labels = batch["label"]
    _, per_example = self.model.loss(logits, aux, labels)
    sums = dict(
        count=mask.sum(), loss=(per_example["cross_entropy"] * mask).sum(),
        correct=(per_example["accuracy"] * mask).sum(),
        label_counts=(jax.nn.one_hot(labels, self.num_classes) *
                      mask[:, None]).sum(0))
    if self.grid is not None and "boxes" in batch:
      covered, has_target = _coverage(aux, batch, self.grid)
      sums.update(covered=covered.sum(), with_target=has_target.sum())
    # The model's output says what to draw; {} draws nothing.
    pictures = aux.pictures()
    if pictures:
      pictures.update(image=batch["image"], label=labels,
                      prediction=logits.argmax(-1))
      if "boxes" in batch:
        pictures.update(boxes=batch["boxes"],
                        box_mask=batch["box_mask"] & batch["is_target"])
      n = self.config.num_image_summaries
      pictures = {name: value[:n] for name, value in pictures.items()}
    return sums, pictures

  def evaluate(self, state: TrainState,
               pipeline: input_pipeline.InputPipeline):
    """Metrics over the whole eval split, and the first batch's pictures."""
    totals, first_pictures = None, None
    for batch_index, batch in enumerate(pipeline.eval_batches()):
      sums, pictures = self.eval_step(state, self.global_batch(batch),
                                      batch_index)
      sums = jax.device_get(sums)
      totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
      if first_pictures is None:
        first_pictures = jax.device_get(pictures)
    count = max(float(totals["count"]), 1.0)
    results = {"loss": float(totals["loss"]) / count,
               "accuracy": float(totals["correct"]) / count,
               "majority_rate": float(totals["label_counts"].max()) / count,
               "examples": int(totals["count"])}
    if "covered" in totals:
      results["coverage"] = float(totals["covered"]) / max(
          float(totals["with_target"]), 1.0)
    return results, first_pictures


def write_eval_picture(writer: metric_writers.MetricWriter, step: int,
                       pictures: dict[str, np.ndarray], grid,
                       value_range: tuple[float, float],
                       pictures_dir: str) -> str:
  """Draws an eval batch's `pictures` as the "eval_selection" image of
  `step` and as pictures_dir/selection_<step>.png; returns that path."""
  picture = visualization.selection_picture(pictures, grid, value_range)
  writer.write_images(step, {"eval_selection": picture[None]})
  path = os.path.join(pictures_dir, f"selection_{step:06d}.png")
  visualization.save_png(picture, path)
  return path


def _check_finite(state: TrainState, config: ml_collections.ConfigDict,
                  step: int) -> None:
  skipped = int(jax.device_get(state.nonfinite_steps))
  if skipped:
    logging.warning("Step %d: %d step(s) in a row had a non-finite loss or "
                    "gradient and were skipped.", step, skipped)
  if skipped >= config.max_nonfinite_steps:
    raise FloatingPointError(
        f"{skipped} consecutive training steps (up to step {step}) had a "
        "non-finite loss or gradient (config.max_nonfinite_steps="
        f"{config.max_nonfinite_steps}). Lower the learning rate or check "
        "the data; the last checkpoint holds the last finite state.")


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict[str, float]:
  """Trains `config` in `workdir` (resuming from its checkpoint), evaluates.

  Returns:
    The final evaluation metrics.
  """
  validate_config(config)
  workdir = os.path.abspath(workdir)
  is_chief = jax.process_index() == 0
  mesh = Mesh(np.array(jax.devices()), (DATA_AXIS,))
  # The model validates its fields before any data is read.
  trainer = Trainer(config, config.dataset.num_classes, mesh)
  pipeline = input_pipeline.create_datasets(
      config, process_index=jax.process_index(),
      process_count=jax.process_count())
  writer = metric_writers.create_default_writer(workdir,
                                                just_logging=not is_chief)
  manager = checkpoints.manager(workdir)
  state = trainer.restore_or_create_state(manager)
  if is_chief:
    workdir_files.save_config(config, workdir)
  first_step = int(jax.device_get(state.step))
  if first_step == 0:
    parameter_overview.log_parameter_overview(state.params)
    writer.write_hparams(_flat_hparams(config))

  total = config.num_train_steps
  report_progress = periodic_actions.ReportProgress(num_train_steps=total,
                                                    writer=writer)
  progress = console.ProgressLine(total)
  pictures_dir = os.path.join(workdir, workdir_files.PICTURES_FOLDER)
  train_metrics, results = None, {}
  batches = pipeline.train_batches(first_step)
  for step in range(first_step, total):
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      state, step_metrics = trainer.train_step(
          state, trainer.global_batch(next(batches)))
    train_metrics = (step_metrics if train_metrics is None else
                     train_metrics.merge(step_metrics))
    done = step + 1
    report_progress(done)
    last = done == total
    if done % config.log_every_steps == 0 or last:
      _check_finite(state, config, done)
      values = train_metrics.compute()
      writer.write_scalars(done, {f"train_{name}": value
                                  for name, value in values.items()})
      train_metrics = None
      if is_chief:
        print(progress.update(done, {
            "cross_entropy": float(values["cross_entropy"]),
            "accuracy": float(values["accuracy"]),
            "sigma": float(values["sigma"])}), flush=True)
    if done % config.eval_every_steps == 0 or last:
      with report_progress.timed("eval"):
        results, pictures = trainer.evaluate(state, pipeline)
      writer.write_scalars(done, {f"eval_{name}": value
                                  for name, value in results.items()})
      if is_chief and pictures:
        write_eval_picture(writer, done, pictures, trainer.grid,
                           pipeline.value_range, pictures_dir)
      logging.info("Evaluation at step %d: %s", done, results)
      if is_chief:
        print(console.evaluation_line(done, results), flush=True)
    if done % config.checkpoint_every_steps == 0 or last:
      _check_finite(state, config, done)
      with report_progress.timed("checkpoint"):
        manager.save(done, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  writer.flush()
  if first_step >= total:  # nothing left to train: evaluate the checkpoint
    results, _ = trainer.evaluate(state, pipeline)
  return results


def _flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Config as a flat dict of scalars for TensorBoard's hparams."""
  flat = {}
  for key, value in flax.traverse_util.flatten_dict(config.to_dict(),
                                                    sep=".").items():
    flat[key] = value if isinstance(value, (int, float, str, bool)) else str(
        value)
  return flat
