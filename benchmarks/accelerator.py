# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The accelerator check: one prepared run of everything a GPU should show.

Run by benchmarks/accelerator.sh (which makes the environment); each step is
a child process with its own time limit, and the results file is rewritten
after every step, so a run cut short keeps what it finished:

  devices   the backend, devices and jax version (names the results file);
  tests     the operator, patch and model tests, then a short training run
            of configs/test.py on synthetic_traffic_signs/tiny;
  topk_op   benchmarks.topk_op: the released formulation against ours at
            traffic and billiard settings (time, memory, gradient quality);
  speed     benchmarks.model_speed: inference at 256-4096 px (the paper's
            speed plot) and the training step at 4096 px;
  default   what `./run.sh` does: build synthetic_traffic_signs/textures,
            pretrain the reader, train configs/synthetic.py, timed;
  mnist     build megapixel_mnist/paper and train its paper-scale config for
            `--mnist_steps` steps (steps per second, device memory).

`--dry_run` runs the same programs with tiny sizes (a CPU finishes in about
two minutes): a typo fails here, not on the accelerator. Steps whose limit
exceeds what is left of `--budget_s` are recorded as skipped.

  python -m benchmarks.accelerator [--dry_run] [--out=DIR]

writes DIR/accelerator_<device>.json (DIR: benchmarks/results); the
benchmarks' own tables go to DIR/accelerator_tables/, not over the CPU ones.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from benchmarks import common

_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Tiny sizes (a CPU check).")
_OUT = flags.DEFINE_string("out", common.RESULTS_DIR, "Results folder.")
_BUDGET_S = flags.DEFINE_integer(
    "budget_s", 540, "Seconds for all steps; later steps that would not fit "
    "are skipped.")
_STEPS = flags.DEFINE_list("steps", None, "Steps to run (default: all).")
_MNIST_STEPS = flags.DEFINE_integer("mnist_steps", 300,
                                    "Training steps of the mnist step.")

PYTHON = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEVICES_CODE = (
    "import json, jax; d = jax.devices(); print('DEVICES ' + json.dumps("
    "{'backend': jax.default_backend(), 'device': d[0].device_kind, "
    "'count': len(d), 'jax': jax.__version__}))")


@dataclasses.dataclass(frozen=True)
class Step:
  """A named list of commands run in order under one time limit."""
  name: str
  commands: list[list[str]]
  limit_s: int


def _module(name: str, *args: str) -> list[str]:
  return [PYTHON, "-m", name, *args]


def _main(config: str, workdir: str, data_dir: str, *flags_: str):
  return _module("ptopk_patch_selection.main", f"--config={config}",
                 f"--workdir={workdir}",
                 f"--config.dataset.data_dir={data_dir}", "--verbosity=-1",
                 *flags_)


def _build(dataset: str, data_dir: str) -> list[str]:
  return _module("ptopk_patch_selection.tools.build_dataset",
                 f"--dataset={dataset}", f"--data_dir={data_dir}",
                 "--noread_epoch")


_TINY_SYNTHETIC = (
    "--config.dataset.name=synthetic_traffic_signs/tiny",
    "--config.dataset.image_size=(128, 128)", "--config.model.k=2",
    "--config.model.patch_size=32", "--config.model.downscale=4",
    "--config.model.pretrained_checkpoint=", "--config.batch_size=4",
    "--config.eval_batch_size=4", "--config.num_train_steps=2",
    "--config.eval_every_steps=2", "--config.checkpoint_every_steps=2")
_TINY_MNIST = (
    "--config.dataset.image_size=(112, 112)", "--config.model.downscale=2",
    "--config.model.k=3", "--config.model.perturbed.num_samples=8",
    "--config.batch_size=4", "--config.eval_batch_size=4")


def steps(dry_run: bool, scratch: str, mnist_steps: int) -> list[Step]:
  """The check's steps; `dry_run` swaps in tiny sizes, nothing else."""
  data, work = os.path.join(scratch, "tfds"), os.path.join(scratch, "work")
  tiny_train = [
      _build("synthetic_traffic_signs/tiny", data),
      _main("configs/test.py", os.path.join(work, "test"), data)]
  tests = ["tests/test_patches.py", "-k", "gradients_reach"] if dry_run else [
      "tests/test_perturbed_topk.py", "tests/test_patches.py",
      "tests/test_models.py"]
  pytest = [PYTHON, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
            "-n", "0", *tests]
  topk = _module("benchmarks.topk_op", "--parts=perturbed",
                 *(["--tiny", "--skip_extractors"] if dry_run else []))
  speed_sizes = (["--sizes=64", "--k=2", "--patch_size=16", "--downscale=2",
                  "--num_samples=8", "--feature_network=resnet18_thin",
                  "--selections=hard", "--repeats=1"] if dry_run else [])
  speed = [
      _module("benchmarks.model_speed", "--mode=inference",
              *(speed_sizes or ["--sizes=256,512,1024,2048,4096",
                                "--max_time_size=4096"])),
      _module("benchmarks.model_speed", "--mode=train",
              *(speed_sizes or ["--sizes=4096", "--max_time_size=4096"]))]
  if dry_run:  # the default's programs on tiny data, without pretraining
    default = [_build("synthetic_traffic_signs/tiny", data),
               _main("configs/synthetic.py", os.path.join(work, "default"),
                     data, *_TINY_SYNTHETIC)]
  else:
    default = [_build("synthetic_traffic_signs/textures", data),
               _module("ptopk_patch_selection.tools.pretrain_reader",
                       "--config=configs/synthetic.py"),
               _main("configs/synthetic.py", os.path.join(work, "default"),
                     data)]
  mnist_dataset = "megapixel_mnist/" + ("tiny" if dry_run else "paper")
  mnist = [_build(mnist_dataset, data),
           _main("configs/megapixel_mnist.py", os.path.join(work, "mnist"),
                 data, f"--config.dataset.name={mnist_dataset}",
                 f"--config.num_train_steps={mnist_steps}",
                 f"--config.eval_every_steps={mnist_steps}",
                 f"--config.checkpoint_every_steps={mnist_steps}",
                 *(_TINY_MNIST if dry_run else []))]
  return [Step("devices", [[PYTHON, "-c", _DEVICES_CODE]], 120),
          Step("tests", [pytest] + tiny_train, 240),
          Step("topk_op", [topk], 150),
          Step("speed", speed, 200),
          Step("default", default, 420),
          Step("mnist", mnist, 300)]


def run_step(step: Step, env: dict[str, str], limit_s: float) -> dict:
  """Runs the step's commands in order; stops at the first failure."""
  record = {"commands": [" ".join(c) for c in step.commands],
            "returncode": 0, "timed_out": False}
  start = time.time()
  output = []
  for command in step.commands:
    left = limit_s - (time.time() - start)
    try:
      done = subprocess.run(command, cwd=REPO, env=env, timeout=max(left, 1),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, check=False)
    except subprocess.TimeoutExpired as e:
      output.append(e.stdout.decode(errors="replace")
                    if isinstance(e.stdout, bytes) else e.stdout or "")
      record.update(returncode=None, timed_out=True)
      break
    output.append(done.stdout)
    if done.returncode:
      record["returncode"] = done.returncode
      break
  record["seconds"] = time.time() - start
  record["output_tail"] = "".join(output)[-3000:]
  return record


def _tables(tables_dir: str) -> dict:
  """The JSON results the benchmarks wrote, by name."""
  found = {}
  for name in sorted(os.listdir(tables_dir)):
    if name.endswith(".json"):
      with open(os.path.join(tables_dir, name)) as f:
        found[name[:-len(".json")]] = json.load(f)
  return found


def _write(path: str, results: dict) -> None:
  partial = path + ".partial"
  with open(partial, "w") as f:
    json.dump(results, f, indent=2)
  os.replace(partial, path)


def main(argv):
  del argv
  out = os.path.abspath(_OUT.value)
  tables_dir = os.path.join(out, "accelerator_tables")
  os.makedirs(tables_dir, exist_ok=True)
  scratch = tempfile.mkdtemp(prefix="accelerator_")
  env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1",
             PTOPK_BENCHMARK_RESULTS=tables_dir)
  chosen = steps(_DRY_RUN.value, scratch, 2 if _DRY_RUN.value else
                 _MNIST_STEPS.value)
  if _STEPS.value:
    chosen = [s for s in chosen if s.name in ["devices", *_STEPS.value]]
  results = {"dry_run": _DRY_RUN.value, "date": time.strftime("%Y-%m-%d"),
             "steps": {}}
  path = os.path.join(out, "accelerator_unknown.json")
  deadline = time.time() + _BUDGET_S.value
  for step in chosen:
    left = deadline - time.time()
    if step.name != "devices" and left < step.limit_s / 2:
      results["steps"][step.name] = {"skipped": f"{left:.0f} s of the "
                                     "budget left"}
      continue
    print(f"[accelerator] {step.name} (limit {step.limit_s} s)", flush=True)
    record = run_step(step, env, min(step.limit_s, max(left, 1)))
    if step.name == "devices":
      found = re.search(r"^DEVICES (.*)$", record["output_tail"], re.M)
      if found:
        results["devices"] = json.loads(found.group(1))
        kind = re.sub(r"[^a-z0-9]+", "_", results["devices"]["device"].lower())
        path = os.path.join(out, f"accelerator_{kind.strip('_')}.json")
    results["steps"][step.name] = record
    results["tables"] = _tables(tables_dir)
    _write(path, results)
    status = ("timed out" if record["timed_out"] else
              f"exit {record['returncode']}")
    print(f"[accelerator] {step.name}: {status} in {record['seconds']:.0f} s",
          flush=True)
  _write(path, results)
  print("wrote", path)
  failed = [name for name, r in results["steps"].items()
            if r.get("returncode") or r.get("timed_out")]
  if failed:
    print(f"[accelerator] failed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
