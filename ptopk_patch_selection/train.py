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
optimiser state stay as they were) and is counted in the state; the logged
train averages are over the applied steps only, with the window's skipped
count beside them (`train_skipped_steps`). The host reads each step's count
while the next step runs (no extra wait) and the run stops with an error at
the step where `config.max_nonfinite_steps` steps have been skipped in all.
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
  nonfinite_steps: jax.Array  # skipped steps since the run began


def _applied_average(name: str):
  """Average of the step output `name` over the steps that were applied
  (output "applied" True); NaN for a window with none."""

  @flax.struct.dataclass
  class AppliedAverage(metrics.Average):

    @classmethod
    def from_model_output(cls, **outputs):
      return super().from_model_output(jnp.reshape(outputs[name], (1,)),
                                       mask=jnp.reshape(outputs["applied"],
                                                        (1,)))
  return AppliedAverage


@flax.struct.dataclass
class _Count(metrics.Average):
  """The sum of a 0/1 step output over the window, not its mean."""

  def compute(self) -> jax.Array:
    return self.total


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: _applied_average("loss")
  cross_entropy: _applied_average("cross_entropy")
  accuracy: _applied_average("accuracy")
  entropy: _applied_average("entropy")
  gradient_norm: _applied_average("gradient_norm")
  sigma: metrics.LastValue.from_output("sigma")
  learning_rate: metrics.LastValue.from_output("learning_rate")
  skipped_steps: _Count.from_output("skipped")
  skipped_total: metrics.LastValue.from_output("skipped_total")


def sigma_at(config: ml_collections.ConfigDict, step: jax.Array) -> jax.Array:
  """Noise scale of train step `step`: linear from sigma to sigma_end."""
  progress = jnp.asarray(step, jnp.float32) / config.num_train_steps
  return config.sigma + (config.sigma_end - config.sigma) * progress


def eval_sigma(config: ml_collections.ConfigDict, step: jax.Array) -> jax.Array:
  """Noise scale at evaluation: config.sigma_eval, else the training sigma
  of `step`."""
  if config.sigma_eval is None:
    return sigma_at(config, step)
  return config.sigma_eval


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
               mesh: Mesh, channels: int = 3):
    self.config = config
    self.num_classes = num_classes
    self.image_size = tuple(config.dataset.image_size)
    self.channels = channels  # of the input images
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
    self.eval_step = jax.jit(self._eval_step, out_shardings=self.replicated,
                             static_argnames="with_pictures")

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
      images = jnp.zeros((1,) + self.image_size + (self.channels,),
                         jnp.float32)
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

  def _apply(self, params, batch_stats, images, **kwargs):
    """model.apply; with config.half_precision in bfloat16 (parameters and
    images cast, float32 kept where the model keeps it: the Top-K, the
    BatchNorm statistics)."""
    if self.config.half_precision:
      params = jax.tree.map(
          lambda x: x.astype(jnp.bfloat16)
          if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
      images = images.astype(jnp.bfloat16)
    return self.model.apply({"params": params, "batch_stats": batch_stats},
                            images, **kwargs)

  def _loss(self, params, batch_stats, batch, rngs, sigma):
    (logits, aux), updates = self._apply(
        params, batch_stats, batch["image"], train=True, sigma=sigma,
        rngs=rngs, mutable=["batch_stats"])
    logits = logits.astype(jnp.float32)  # the loss in float32
    model_loss, per_example = self.model.loss(logits, aux, batch["label"])
    # The regulariser maximises the entropy of softmax(raw scores).
    loss = model_loss - self.config.entropy_regularizer * aux.entropy
    outputs = {name: value.mean() for name, value in per_example.items()}
    outputs["entropy"] = aux.entropy
    return loss, (outputs, updates.get("batch_stats", {}))

  def _train_step(self, state: TrainState, batch):
    """One optimiser step; not applied if anything is non-finite.

    The metrics carry `skipped_total` (the state's `nonfinite_steps`
    after this step), which the host can still read once the state has
    been donated to the next step.
    """
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
        nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32))
    step_metrics = TrainMetrics.single_from_model_output(
        loss=loss, sigma=sigma, gradient_norm=gradient_norm,
        learning_rate=self.learning_rate_fn(state.step), applied=finite,
        skipped=1.0 - finite.astype(jnp.float32),
        skipped_total=new_state.nonfinite_steps, **outputs)
    return new_state, step_metrics

  def predict(self, state: TrainState, images: jax.Array,
              batch_index) -> tuple[jax.Array, Any]:
    """The model in evaluation mode on eval batch `batch_index`: float32
    logits (b, num_classes) and the model's aux output.

    Random draws at evaluation (random patches, perturbed Top-K with
    `sigma_eval`, or the current training sigma when it is unset) depend on
    the seed and the batch's position in the eval split only, so every
    evaluation of a run sees the same ones.
    """
    logits, aux = self._apply(
        state.params, state.batch_stats, images, train=False,
        sigma=eval_sigma(self.config, state.step),
        rngs=step_rngs(self.config, batch_index, stream=1))
    return logits.astype(jnp.float32), aux

  def _eval_step(self, state: TrainState, batch, batch_index,
                 with_pictures: bool = False):
    """Sums over the valid rows of one eval batch, and picture data.

    The pictures ({} unless `with_pictures`) are cut to
    `config.num_image_summaries` rows before they leave the devices. The
    model's outputs are `predict`'s.
    """
    logits, aux = self.predict(state, batch["image"], batch_index)
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
    pictures = aux.pictures() if with_pictures else {}
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
    """Metrics over the whole eval split, and the first batch's pictures.

    The sums stay on the devices until the last batch is queued, so reading
    the next batch overlaps the current one's evaluation.
    """
    totals, first_pictures = None, {}
    for batch_index, batch in enumerate(pipeline.eval_batches()):
      sums, pictures = self.eval_step(state, self.global_batch(batch),
                                      batch_index,
                                      with_pictures=batch_index == 0)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
      if batch_index == 0:
        first_pictures = pictures
    totals, first_pictures = jax.device_get((totals, first_pictures))
    count = max(float(totals["count"]), 1.0)
    results = {"loss": float(totals["loss"]) / count,
               "accuracy": float(totals["correct"]) / count,
               "majority_rate": float(totals["label_counts"].max()) / count,
               "examples": int(totals["count"])}
    if "covered" in totals:
      results["coverage"] = float(totals["covered"]) / max(
          float(totals["with_target"]), 1.0)
    return results, first_pictures


def restore_trained(workdir: str, config: ml_collections.ConfigDict
                    ) -> tuple[input_pipeline.InputPipeline, Trainer, TrainState]:
  """The input pipeline, Trainer (on every device) and latest checkpointed
  state of the run in `workdir` with `config` (its saved config, possibly
  edited); MissingFileError naming the folder when it has no checkpoint."""
  pipeline = input_pipeline.create_datasets(config)
  trainer = Trainer(config, pipeline.num_classes,
                    Mesh(np.array(jax.devices()), (DATA_AXIS,)),
                    pipeline.channels)
  manager = checkpoints.manager(workdir)
  if manager.latest_step() is None:
    raise errors.MissingFileError(
        f"No checkpoint in {manager.directory}: train first (python -m "
        f"ptopk_patch_selection.main --workdir={workdir} ...).")
  return pipeline, trainer, trainer.restore_or_create_state(
      manager, set_aside_unreadable=False)


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


def _check_skipped(skipped_total: metrics.LastValue,
                   config: ml_collections.ConfigDict, step: int) -> None:
  """Stops the run once `config.max_nonfinite_steps` steps were skipped.

  Args:
    skipped_total: the `skipped_total` metric of train step `step` (reading
      it waits for that step only).
    config: the run's config.
    step: the number of steps done after that step.
  """
  # One step's LastValue holds the value itself as its total (count 1):
  # reading it is a transfer of a finished buffer, no computation queued.
  skipped = int(jax.device_get(skipped_total.total))
  if skipped >= config.max_nonfinite_steps:
    raise FloatingPointError(
        f"{skipped} training steps (up to step {step}) had a non-finite loss "
        "or gradient and were skipped (config.max_nonfinite_steps="
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
  # The model's fields fail before any data is read (building it is cheap:
  # no parameters); the Trainer then takes the channels from the data.
  models.create_model(config.model, num_classes=config.dataset.num_classes,
                      image_size=config.dataset.image_size)
  pipeline = input_pipeline.create_datasets(
      config, process_index=jax.process_index(),
      process_count=jax.process_count())
  trainer = Trainer(config, pipeline.num_classes, mesh, pipeline.channels)
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
  previous = None  # (steps done, skipped_total) of the step before this one
  try:
    for step in range(first_step, total):
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, step_metrics = trainer.train_step(
            state, trainer.global_batch(next(batches)))
      if previous is not None:  # this step is queued while the last is read
        _check_skipped(previous[1], config, previous[0])
      train_metrics = (step_metrics if train_metrics is None else
                       train_metrics.merge(step_metrics))
      done = step + 1
      previous = (done, step_metrics.skipped_total)
      report_progress(done)
      last = done == total
      if done % config.log_every_steps == 0 or last:
        values = train_metrics.compute()
        if values["skipped_steps"]:
          logging.warning("Steps up to %d: %d step(s) had a non-finite loss or "
                          "gradient and were skipped.", done,
                          int(values["skipped_steps"]))
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
        _check_skipped(step_metrics.skipped_total, config, done)
        with report_progress.timed("checkpoint"):
          manager.save(done, args=ocp.args.StandardSave(state))
  finally:  # also when the run stops: what was logged reaches the files
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
