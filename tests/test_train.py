# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""End-to-end training: outputs, exact resume, devices, processes, NaNs."""

import os
import re
import socket
import subprocess
import sys
import time

from clu import metric_writers
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest

from benchmarks import selection_errors
from configs import test as test_config
from ptopk_patch_selection import checkpoints
from ptopk_patch_selection import console
from ptopk_patch_selection import errors
from ptopk_patch_selection import input_pipeline
from ptopk_patch_selection import metrics_io
from ptopk_patch_selection import patches
from ptopk_patch_selection import train
from ptopk_patch_selection import visualization
from ptopk_patch_selection import visualize
from ptopk_patch_selection import workdir_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny shapes: compiling dominates, so XLA compiles cheaply here and in the
# runs these tests start (the comparisons are between runs compiled alike).
pytestmark = pytest.mark.usefixtures("fast_compile")


def _config(data_dir, **overrides):
  config = test_config.get_config()
  config.dataset.data_dir = data_dir
  config.update(overrides)
  return config


def _final_params(workdir):
  """(step, parameters) of the latest checkpoint, as numpy arrays.

  Read as plain arrays so that checkpoints of any device topology compare.
  """
  step = ocp.CheckpointManager(os.path.join(workdir,
                                            "checkpoints")).latest_step()
  path = os.path.join(workdir, "checkpoints", str(step), "default")
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  as_numpy = jax.tree.map(
      lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  restored = checkpointer.restore(
      path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
  return step, restored["params"]


def _assert_trees_equal(a, b, **tolerance):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    if tolerance:
      np.testing.assert_allclose(x, y, **tolerance)
    else:
      np.testing.assert_array_equal(x, y)


def _main_command(workdir, data_dir, *flags,
                  program=("-m", "ptopk_patch_selection.main")):
  return [sys.executable, *program, "--config=configs/test.py",
          f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}",
          *flags]


def _environment(num_devices):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
  env["PYTHONPATH"] = REPO
  env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  return env


def _accuracy_of_checkpoint(config, workdir):
  """Accuracy over the eval split of the workdir's latest checkpoint, from
  the model's logits: independent of Trainer.evaluate's sums."""
  trainer = train.Trainer(config, config.dataset.num_classes,
                          Mesh(np.array(jax.devices()), (train.DATA_AXIS,)))
  state = trainer.restore_or_create_state(checkpoints.manager(workdir),
                                          set_aside_unreadable=False)
  sigma = train.sigma_at(config, state.step)
  apply = jax.jit(lambda variables, images, rngs: trainer.model.apply(
      variables, images, train=False, sigma=sigma, rngs=rngs)[0])
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  correct, count = 0, 0
  pipeline = input_pipeline.create_datasets(config)
  for index, batch in enumerate(pipeline.eval_batches()):
    logits = apply(variables, batch["image"],
                   train.step_rngs(config, index, stream=1))
    right = np.asarray(logits).argmax(-1) == batch["label"]
    correct += int(right[batch["mask"]].sum())
    count += int(batch["mask"].sum())
  return correct / count


@pytest.mark.slow
def test_train_and_evaluate_writes_metrics_checkpoint_and_pictures(
    tiny_traffic_data_dir, tmp_path):
  config = _config(tiny_traffic_data_dir)
  results = train.train_and_evaluate(config, str(tmp_path))
  assert results["examples"] == 8  # the whole test split, padded batches
  # The returned accuracy is the final checkpoint's, counted afresh.
  assert results["accuracy"] == pytest.approx(
      _accuracy_of_checkpoint(config, str(tmp_path)))
  frame = metrics_io.read_metrics(str(tmp_path))
  train_steps = frame[(frame.split == "train") & (frame.name == "loss")]
  assert list(train_steps.step) == [2, 4, 6]
  eval_steps = frame[(frame.split == "eval") & (frame.name == "accuracy")]
  assert list(eval_steps.step) == [3, 6]
  final = frame[(frame.split == "eval") & (frame.step == 6)]
  logged = dict(zip(final.name, final.value))
  for name in ("accuracy", "coverage", "loss", "majority_rate"):
    assert logged[name] == pytest.approx(results[name]), name
  sigma = frame[(frame.split == "train") & (frame.name == "sigma")]
  assert np.all(np.diff(sigma.value) < 0)  # decays linearly
  assert _final_params(str(tmp_path))[0] == 6
  assert sorted(os.listdir(tmp_path / "pictures")) == [
      "selection_000003.png", "selection_000006.png"]
  assert metrics_io.read_images(str(tmp_path), "eval_selection")
  summary = console.describe_results(results, str(tmp_path))
  assert "majority-class rate" in summary and "covered-object" in summary
  assert str(tmp_path / "checkpoints" / "6") in summary
  assert str(tmp_path / "pictures" / "selection_000006.png") in summary
  paths = visualize.write_pictures(str(tmp_path), num_images=2)
  assert [os.path.basename(p) for p in paths] == ["visualize_0.png",
                                                  "visualize_1.png"]
  assert all(os.path.getsize(p) > 0 for p in paths)
  # The error count evaluates the model as the evaluations did.
  step, counts, _ = selection_errors.count(str(tmp_path))
  assert step == 6 and sum(counts.values()) == 8
  assert selection_errors.accuracy(counts) == pytest.approx(
      results["accuracy"])


def _find(picture, block):
  """(row, col) of every place where uint8 `block` stands in `picture`."""
  windows = np.lib.stride_tricks.sliding_window_view(picture, block.shape)
  return list(zip(*np.nonzero((windows == block).all(axis=(-3, -2, -1))[
      ..., 0])))


def test_ntsnet_evaluation_pictures_show_its_part_images(
    tiny_traffic_data_dir, tmp_path):
  """NTS-Net's eval_selection picture: each image and its k parts beside it."""
  config = _config(tiny_traffic_data_dir)
  config.model.update(name="ntsnet", feature_network="resnet18_thin")
  config.model.ntsnet.part_size = 16
  pipeline = input_pipeline.create_datasets(config)
  trainer = train.Trainer(config, pipeline.num_classes,
                          Mesh(np.array(jax.devices()), (train.DATA_AXIS,)))
  _, pictures = trainer.evaluate(trainer.create_state(), pipeline)
  assert pictures["parts"].shape == (2, 2, 16, 16, 3)  # 2 images, k=2
  writer = metric_writers.create_default_writer(str(tmp_path))
  path = train.write_eval_picture(writer, 7, pictures, trainer.grid,
                                  pipeline.value_range,
                                  str(tmp_path / "pictures"))
  writer.flush()
  assert metrics_io.read_images(str(tmp_path), "eval_selection")
  picture = np.asarray(Image.open(path))
  gap = visualization.GAP
  assert picture.shape[1] == 128 + gap + 16  # the image | a column of parts
  tops = set()
  for image, parts in zip(pictures["image"], pictures["parts"]):
    image = visualization.to_rgb_uint8(image)
    slots = [_find(picture, visualization.to_rgb_uint8(part))
             for part in parts]
    for top, left in slots[0]:
      beside = picture[top:top + 128, :128] == image  # but for object boxes
      if (left == 128 + gap and (top + 16 + gap, left) in slots[1] and
          beside.all(-1).mean() > 0.9):
        tops.add(top)  # slot 0 beside the image's top, slot 1 below it
  assert len(tops) == 2


# main.py, except that the save of step 6 hangs just before Orbax renames its
# temporary folder into place, after touching the file $PTOPK_TEST_HUNG.
_MAIN_HANGING_IN_SAVE_6 = """
import os, time
from orbax.checkpoint._src.path import atomicity
finalize = atomicity.AtomicRenameTemporaryPath.finalize
async def finalize_unless_step_6(self):
  if self.get_final().name == "6":
    open(os.environ["PTOPK_TEST_HUNG"], "w").close()
    time.sleep(600)
  await finalize(self)
atomicity.AtomicRenameTemporaryPath.finalize = finalize_unless_step_6
from ptopk_patch_selection import cli, main
cli.run(main.main)
"""


def _stop(process: subprocess.Popen) -> None:
  """Kills `process` (if it still runs) and reaps it."""
  process.kill()
  process.wait()


@pytest.mark.slow
def test_run_killed_in_a_save_resumes_past_a_garbled_checkpoint_exactly(
    tiny_traffic_data_dir, tmp_path):
  """Killed while saving step 6, then step 4 garbled: resumes from step 2."""
  steps = ["--config.num_train_steps=10", "--config.eval_every_steps=100",
           "--config.log_every_steps=1"]
  killed = str(tmp_path / "killed")
  hung = tmp_path / "hung"
  # stderr to a file: an unread pipe would stop the run once full.
  stderr_path = tmp_path / "killed_stderr.txt"
  with open(stderr_path, "wb") as stderr:
    process = subprocess.Popen(
        _main_command(killed, tiny_traffic_data_dir, *steps,
                      program=("-c", _MAIN_HANGING_IN_SAVE_6)), cwd=REPO,
        env=_environment(4) | {"PTOPK_TEST_HUNG": str(hung)},
        stdout=subprocess.DEVNULL, stderr=stderr)
  try:
    deadline = time.time() + 300
    while not hung.exists() and process.poll() is None:
      assert time.time() < deadline, "the save of step 6 never began"
      time.sleep(0.05)
  finally:
    _stop(process)  # SIGKILL, in the save of step 6
  assert hung.exists(), stderr_path.read_text()[-3000:]
  directory = os.path.join(killed, "checkpoints")
  # The killed save left its temporary folder, and the earlier checkpoints
  # as they were: the newest is readable.
  assert sorted(os.listdir(directory)) == ["2", "4", "6.orbax-checkpoint-tmp"]
  assert _final_params(killed)[0] == 4
  # Then its data files lose their ends, as on a full disk.
  for root, _, files in os.walk(os.path.join(directory, "4")):
    for name in files if os.path.basename(root) == "d" else []:
      os.truncate(os.path.join(root, name), 10)

  quiet_by_itself = {key: value for key, value in _environment(4).items()
                     if key not in ("TF_CPP_MIN_LOG_LEVEL",
                                    "TF_ENABLE_ONEDNN_OPTS")}
  resumed = subprocess.run(
      _main_command(killed, tiny_traffic_data_dir, *steps), cwd=REPO,
      env=quiet_by_itself, check=True, capture_output=True, text=True,
      timeout=600)
  assert f"Restoring {directory} at step 2." in resumed.stdout
  assert (f"Checkpoint {os.path.join(directory, '4')} cannot be read" in
          resumed.stderr)
  assert os.listdir(os.path.join(killed, "unreadable_checkpoints"))
  # The terminal shows progress, not tracebacks, TensorFlow or Orbax
  # start-up chatter.
  assert "Traceback" not in resumed.stderr
  assert "oneDNN" not in resumed.stderr
  assert "checkpoint_manager.py" not in resumed.stderr
  uninterrupted = str(tmp_path / "uninterrupted")
  subprocess.run(_main_command(uninterrupted, tiny_traffic_data_dir, *steps),
                 cwd=REPO, env=_environment(4), check=True,
                 capture_output=True, timeout=600)
  step, resumed = _final_params(killed)
  assert step == 10
  _assert_trees_equal(resumed, _final_params(uninterrupted)[1])


# Float noise differs with the device count. The device-count comparisons
# train with hard selection (a perturbed sample near a tie flips with float
# noise and changes the gradient) and SGD (Adam turns noise in near-zero
# gradients into full-size steps); the sharded operator itself is compared
# in test_perturbed_topk.py.
_STABLE_FLAGS = ["--config.optimizer=sgd", "--config.learning_rate=0.05",
                 "--config.model.selection=hard"]


def _stable_config(data_dir):
  config = _config(data_dir, optimizer="sgd", learning_rate=0.05)
  config.model.selection = "hard"
  return config


@pytest.mark.slow
def test_one_and_four_devices_give_the_same_parameters(tiny_traffic_data_dir,
                                                       tmp_path):
  assert jax.device_count() == 4
  four = str(tmp_path / "four")
  train.train_and_evaluate(_stable_config(tiny_traffic_data_dir), four)
  one = str(tmp_path / "one")
  subprocess.run(_main_command(one, tiny_traffic_data_dir, *_STABLE_FLAGS),
                 cwd=REPO, env=_environment(1), check=True,
                 capture_output=True, timeout=600)
  _assert_trees_equal(_final_params(one)[1], _final_params(four)[1],
                      rtol=1e-3, atol=1e-4)


def _free_port() -> int:
  """A port free now. Another program may take it before the coordinator
  binds it: the caller retries with a new one when that happens."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


# What a coordinator whose port was taken in the meantime prints (gRPC).
_PORT_TAKEN = ("Address already in use", "Failed to add port")


def _run_two_processes(workdir, data_dir):
  """[(exit status, stderr)] of the 2 processes of one run, both ended."""
  address = f"localhost:{_free_port()}"
  processes, stderrs = [], []
  try:
    for i in range(2):
      processes.append(subprocess.Popen(
          _main_command(workdir, data_dir, *_STABLE_FLAGS,
                        f"--coordinator_address={address}",
                        "--num_processes=2", f"--process_id={i}"),
          cwd=REPO, env=_environment(2), stdout=subprocess.DEVNULL,
          stderr=subprocess.PIPE))
    for process in processes:
      stderrs.append(process.communicate(timeout=600)[1].decode())
  finally:
    for process in processes:
      _stop(process)
  return [(p.returncode, e) for p, e in zip(processes, stderrs)]


@pytest.mark.slow
def test_two_processes_match_one_process(tiny_traffic_data_dir, tmp_path):
  """2 processes x 2 CPU devices (gloo collectives) = 1 process x 4."""
  for attempt in range(3):
    two = str(tmp_path / f"two_{attempt}")
    ended = _run_two_processes(two, tiny_traffic_data_dir)
    if not any(taken in stderr for _, stderr in ended
               for taken in _PORT_TAKEN):
      break
  for status, stderr in ended:
    assert status == 0, stderr[-3000:]
  one = str(tmp_path / "one")
  train.train_and_evaluate(_stable_config(tiny_traffic_data_dir), one)
  _assert_trees_equal(_final_params(two)[1], _final_params(one)[1],
                      rtol=1e-3, atol=1e-4)


def _poison_train_steps(monkeypatch, steps):
  """Train batches of the given steps get a NaN pixel."""
  original = input_pipeline.InputPipeline.train_batch

  def train_batch(self, step):
    batch = original(self, step)
    if step in steps:
      batch["image"][0, 0, 0, 0] = np.nan
    return batch

  monkeypatch.setattr(input_pipeline.InputPipeline, "train_batch",
                      train_batch)


@pytest.mark.slow
def test_a_nonfinite_step_is_skipped_and_left_out_of_the_averages(
    tiny_traffic_data_dir, tmp_path, monkeypatch):
  _poison_train_steps(monkeypatch, {2})
  workdir = str(tmp_path / "skip")
  train.train_and_evaluate(_config(tiny_traffic_data_dir), workdir)
  frame = metrics_io.read_metrics(workdir)
  train_rows = frame[frame.split == "train"]
  skipped = train_rows[train_rows.name == "skipped_steps"]
  assert list(skipped.value) == [0.0, 1.0, 0.0]  # step 2 of steps 1-2
  assert np.all(np.isfinite(train_rows[train_rows.name == "loss"].value))
  params = _final_params(workdir)[1]
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))


@pytest.mark.slow
def test_skipped_steps_stop_the_run_at_the_limit_even_when_not_in_a_row(
    tiny_traffic_data_dir, tmp_path, monkeypatch):
  """Every other step is non-finite: the third skipped one (step 6 of 10)
  stops the run, before any checkpoint, though no two were in a row."""
  _poison_train_steps(monkeypatch, {1, 3, 5, 7, 9})
  config = _config(tiny_traffic_data_dir, max_nonfinite_steps=3,
                   num_train_steps=10, log_every_steps=2,
                   checkpoint_every_steps=8, eval_every_steps=10)
  workdir = tmp_path / "stop"
  with pytest.raises(FloatingPointError,
                     match=r"3 training steps \(up to step 6\)"):
    train.train_and_evaluate(config, str(workdir))
  assert not (workdir / "checkpoints" / "8").exists()
  frame = metrics_io.read_metrics(str(workdir))
  train_rows = frame[frame.split == "train"]
  loss = train_rows[train_rows.name == "loss"]
  assert list(loss.step) == [2, 4, 6]  # nothing logged past the limit
  assert np.all(np.isfinite(loss.value))  # over the applied steps
  skipped = train_rows[train_rows.name == "skipped_steps"]
  assert list(skipped.value) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("overrides, message", [
    (dict(sigma=-0.1), "sigma=-0.1"),
    (dict(batch_size=6), "batch_size=6"),
    (dict(num_train_steps=0), "num_train_steps=0"),
    (dict(optimizer="lamb"), "optimizer='lamb'"),
])
def test_bad_configs_fail_at_start_with_the_field_name(tiny_traffic_data_dir,
                                                       tmp_path, overrides,
                                                       message):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(_config(tiny_traffic_data_dir, **overrides),
                             str(tmp_path))


@pytest.mark.parametrize("field, value, message", [
    ("k", 10, "model.k=10"),
    ("patch_size", 200, "model.patch_size=200"),
    ("aggregator", "attention", "model.aggregator"),
])
def test_bad_model_fields_fail_at_start(tiny_traffic_data_dir, tmp_path,
                                        field, value, message):
  config = _config(tiny_traffic_data_dir)
  config.model[field] = value
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path))


def test_misspelt_config_field_is_rejected():
  config = test_config.get_config()
  with pytest.raises(AttributeError):
    config.model.patch_sise = 32


def test_missing_real_dataset_names_url_and_folder(tmp_path):
  from configs import traffic  # pylint: disable=g-import-not-at-top
  config = traffic.get_config()
  config.dataset.data_dir = str(tmp_path / "tfds")
  config.dataset.manual_dir = str(tmp_path / "downloads")
  with pytest.raises(FileNotFoundError, match="isy.liu.se") as error:
    train.train_and_evaluate(config, str(tmp_path / "work"))
  assert str(tmp_path / "downloads") in str(error.value)


def test_score_function_step_trains_the_scorer(tiny_traffic_data_dir):
  """train_patches="score_function": the loss's surrogate moves the scorer."""
  config = _config(tiny_traffic_data_dir)
  config.model.train_patches = "score_function"
  config.model.perturbed.loss_samples = 2
  # Without the surrogate nothing else would move the scorer.
  config.entropy_regularizer = 0.0
  config.weight_decay = 0.0
  trainer = train.Trainer(
      config, num_classes=4,
      mesh=Mesh(np.array(jax.devices()), (train.DATA_AXIS,)))
  state = trainer.create_state()
  before = jax.device_get(state.params["scorer"])
  pipeline = input_pipeline.create_datasets(config)
  state, step_metrics = trainer.train_step(
      state, trainer.global_batch(pipeline.train_batch(0)))
  values = step_metrics.compute()
  assert np.isfinite(values["loss"]) and values["skipped_steps"] == 0
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), before,
                       jax.device_get(state.params["scorer"]))
  assert max(jax.tree.leaves(moved)) > 0


def _trainer_and_batch(config):
  trainer = train.Trainer(
      config, num_classes=4,
      mesh=Mesh(np.array(jax.devices()), (train.DATA_AXIS,)))
  pipeline = input_pipeline.create_datasets(config)
  return trainer, pipeline


def test_perturbed_evaluation_uses_sigma(tiny_traffic_data_dir):
  """selection_eval="perturbed" differs from hard selection when sigma > 0,
  equals it at sigma_eval=0, and is repeatable."""
  config = _config(tiny_traffic_data_dir, sigma=0.5)
  trainer, pipeline = _trainer_and_batch(config)
  state = trainer.create_state()
  batch = trainer.global_batch(pipeline.eval_batch(0))

  def patches(**overrides):
    trainer, _ = _trainer_and_batch(
        _config(tiny_traffic_data_dir, sigma=0.5, **overrides))
    _, pictures = trainer.eval_step(state, batch, 0, with_pictures=True)
    return np.asarray(pictures["patches"])

  config.model.selection_eval = "perturbed"
  hard = patches()
  perturbed = patches(model=config.model)  # sigma_eval None: sigma 0.5
  assert not np.allclose(hard, perturbed)
  np.testing.assert_array_equal(perturbed, patches(model=config.model))
  np.testing.assert_allclose(patches(model=config.model, sigma_eval=0.0),
                             hard, atol=1e-6)


def test_frozen_params_are_not_trained(tiny_traffic_data_dir):
  config = _config(tiny_traffic_data_dir,
                   frozen_params=r"^(feature_network|aggregator|head)/")
  trainer, pipeline = _trainer_and_batch(config)
  state = trainer.create_state()
  before = jax.device_get(state.params)
  state, _ = trainer.train_step(
      state, trainer.global_batch(pipeline.train_batch(0)))
  after = jax.device_get(state.params)
  for name in ("feature_network", "head"):
    _assert_trees_equal(before[name], after[name])
  moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), before["scorer"],
                       after["scorer"])
  assert max(jax.tree.leaves(moved)) > 0


def test_bad_frozen_params_regex_names_the_field(tiny_traffic_data_dir,
                                                 tmp_path):
  with pytest.raises(ValueError, match=r"frozen_params='\(head'"):
    train.train_and_evaluate(
        _config(tiny_traffic_data_dir, frozen_params="(head"), str(tmp_path))


@pytest.mark.slow
def test_a_finished_workdir_resumes_and_evaluates_without_its_pretrained_file(
    tiny_traffic_data_dir, tmp_path):
  """The checkpoint holds every parameter: the pretrained file is read only
  for a fresh run (a workdir copied to another machine resumes)."""
  from ptopk_patch_selection.tools import pretrain_reader  # pylint: disable=g-import-not-at-top
  config = _config(tiny_traffic_data_dir)
  reader = tmp_path / "reader.npz"
  config.model.pretrained_checkpoint = str(reader)
  pretrain_reader.ensure_pretrained(
      config.model, settings=pretrain_reader.Settings(
          steps=2, batch_size=4, test_patches=8), log=lambda _: None)
  workdir = str(tmp_path / "workdir")
  first = train.train_and_evaluate(config, workdir)
  reader.rename(tmp_path / "moved_away.npz")
  again = train.train_and_evaluate(config, workdir)
  assert again == first
  assert visualize.write_pictures(workdir, num_images=1)
  with pytest.raises(FileNotFoundError, match="reader.npz"):
    train.train_and_evaluate(config, str(tmp_path / "fresh"))


def _validate(**overrides):
  config = test_config.get_config()
  config.update(overrides)
  train.validate_config(config)


@pytest.mark.parametrize("overrides, message", [
    (dict(sigma_end=-0.01), "sigma_end=-0.01 must be >= 0."),
    (dict(sigma_eval=-1.0), "sigma_eval=-1.0 must be >= 0"),
    (dict(eval_every_steps=0), "eval_every_steps=0 must be >= 1."),
    (dict(eval_every_steps=-3), "eval_every_steps=-3 must be >= 1."),
    (dict(log_every_steps=0), "log_every_steps=0 must be >= 1."),
    (dict(log_every_steps=-1), "log_every_steps=-1 must be >= 1."),
    (dict(checkpoint_every_steps=0),
     "checkpoint_every_steps=0 must be >= 1."),
    (dict(checkpoint_every_steps=-5),
     "checkpoint_every_steps=-5 must be >= 1."),
])
def test_validate_config_names_the_bad_field(overrides, message):
  with pytest.raises(errors.ConfigError,
                     match=re.escape(f"Invalid config: {message}")):
    _validate(**overrides)


def test_validate_config_accepts_the_edges():
  _validate()  # the test config itself
  _validate(sigma=0.0, sigma_end=0.0, sigma_eval=0.0, eval_every_steps=1,
            log_every_steps=1, checkpoint_every_steps=1)


def test_an_older_workdir_config_gets_the_fields_added_since(tmp_path):
  """A config.json saved before a field existed loads with its default;
  the saved values stay."""
  import json  # pylint: disable=g-import-not-at-top
  config = test_config.get_config()
  config.model.k = 3
  workdir_files.save_config(config, str(tmp_path))
  path = tmp_path / workdir_files.CONFIG_FILE
  saved = json.loads(path.read_text())
  del saved["half_precision"], saved["model"]["stem_gradient"]
  path.write_text(json.dumps(saved))
  loaded = workdir_files.load_config(str(tmp_path))
  assert loaded.half_precision is False and loaded.model.k == 3
  assert loaded.model.stem_gradient == config.model.stem_gradient


class _Selection:
  """What _coverage reads of a model's aux output."""

  def __init__(self, indices):
    self.indices = np.asarray(indices, np.int32)


def _box_around(centre_y, centre_x, size=40.0, half=3.0):
  """A normalised (ymin, xmin, ymax, xmax) box centred on the pixel
  (centre_y, centre_x) of a size x size image."""
  return [(centre_y - half) / size, (centre_x - half) / size,
          (centre_y + half) / size, (centre_x + half) / size]


def test_coverage_counts_a_selected_patch_over_the_target_centre():
  """40x40 image, 4x4 grid of 10 px patches: patch i*4+j covers rows
  [10i, 10i + 10) and columns [10j, 10j + 10)."""
  grid = patches.PatchGrid((40, 40), (4, 4), 10)
  target = _box_around(15, 25)  # in patch 1*4+2 = 6
  elsewhere = _box_around(5, 5)  # in patch 0
  on_edge = _box_around(20, 30)  # the first row and column of patch 11
  batch = {
      "boxes": np.array([
          [target, elsewhere],  # 0: patch 6 selected: covered
          [target, elsewhere],  # 1: patch 0 holds only the other object
          [elsewhere, target],  # 2: the target is the second object
          [target, elsewhere],  # 3: the target's box is padding
          [target, elsewhere],  # 4: a padding row of the batch
          [on_edge, elsewhere],  # 5: patch 11, not patch 6 before it
          [on_edge, elsewhere],  # 6: the same, patch 6 selected
      ], np.float32),
      "is_target": np.array([[True, False]] * 2 + [[False, True]] +
                            [[True, False]] * 4),
      "box_mask": np.array([[True, True]] * 3 + [[False, True]] +
                           [[True, True]] * 3),
      "mask": np.array([True, True, True, True, False, True, True]),
  }
  selected = _Selection([[6, 0], [0, 1], [3, 6], [6, 0], [6, 0], [11, 1],
                         [6, 1]])
  covered, has_target = train._coverage(  # pylint: disable=protected-access
      selected, batch, grid)
  np.testing.assert_array_equal(covered, [1, 0, 1, 0, 0, 1, 0])
  np.testing.assert_array_equal(has_target, [1, 1, 1, 0, 0, 1, 1])


@pytest.mark.slow
def test_half_precision_reads_in_bfloat16_and_selects_in_float32(
    tiny_traffic_data_dir):
  """config.half_precision: the reader computes in bfloat16, the Top-K's
  scores and indicators stay float32, the loss is close to float32's, and
  a train step keeps float32 parameters."""
  full, pipeline = _trainer_and_batch(_config(tiny_traffic_data_dir))
  half, _ = _trainer_and_batch(
      _config(tiny_traffic_data_dir, half_precision=True))
  state = full.create_state()
  batch = full.global_batch(pipeline.train_batch(0))
  rngs = train.step_rngs(full.config, 0)
  loss_full = float(full._loss(state.params, state.batch_stats, batch, rngs,
                               0.05)[0])
  loss_half = float(half._loss(state.params, state.batch_stats, batch, rngs,
                               0.05)[0])
  assert loss_half != loss_full
  assert abs(loss_half - loss_full) < 0.02 * abs(loss_full)
  (_, aux), captured = half._apply(
      state.params, state.batch_stats, batch["image"], train=False,
      sigma=0.05, rngs=rngs, capture_intermediates=True,
      mutable=["intermediates"])
  reader = captured["intermediates"]["feature_network"]["__call__"][0]
  assert reader.dtype == jnp.bfloat16
  assert aux.normalized_scores.dtype == aux.indicators.dtype == jnp.float32
  state, step_metrics = half.train_step(state, batch)
  assert np.isfinite(float(step_metrics.compute()["loss"]))
  assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {
      np.dtype("float32")}
