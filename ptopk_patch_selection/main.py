# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Entry point: trains and evaluates one config in one workdir.

  python -m ptopk_patch_selection.main --config=configs/traffic.py \
      --workdir=workdirs/traffic [--config.batch_size=16 ...]

Runs from any directory: --config and --workdir are relative to the current
directory, relative paths inside the config (the data folders) to the root of
`locations.py` ($PTOPK_ROOT, else the checkout); the resolved folders are
printed at start.

Kept short on purpose: the logic is in `train.py`, importable from a notebook.
A multi-process job (several GPU hosts, a TPU pod slice) is detected from the
flags or from the cluster environment, and `jax.distributed.initialize()` is
called before anything touches the devices.

Library INFO logs (Orbax, CLU, TFDS) are off by default so that the progress
line stays readable; `--verbosity=0` turns them back on.
"""

import os

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import tensorflow as tf

from ptopk_patch_selection import cli
from ptopk_patch_selection import console
from ptopk_patch_selection import locations
from ptopk_patch_selection import train

_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory for checkpoints, metrics, pictures.")
config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                lock_config=True)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "host:port of process 0 for a multi-process job; None: single process, "
    "or auto-detected on TPU pods and SLURM/Open MPI clusters.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process.")
flags.mark_flags_as_required(["config", "workdir"])


def _initialize_distributed() -> None:
  if _COORDINATOR.value:
    # CPU devices of different processes talk through gloo (no effect on
    # accelerators). Nothing may touch the backend before initialize().
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  elif _cluster_size() > 1:
    jax.distributed.initialize()  # reads the cluster's environment


def _cluster_size() -> int:
  """Processes of a TPU pod slice, SLURM or Open MPI job (1 if none)."""
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  sizes = [len(hosts.split(",")) if hosts else 1]
  for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    if os.environ.get(name, "").isdigit():
      sizes.append(int(os.environ[name]))
  return max(sizes)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  console.quiet_library_logs()
  # TensorFlow only reads data; keep it off the accelerators.
  tf.config.set_visible_devices([], "GPU")
  _initialize_distributed()
  if jax.process_index() == 0:
    print(f"JAX: {jax.process_count()} process(es), {jax.device_count()} "
          f"device(s): {jax.devices()}", flush=True)
    data = flags.FLAGS.config.dataset
    print(f"Data: {locations.resolve(data.data_dir)}, downloads: "
          f"{locations.resolve(data.manual_dir)}, workdir: "
          f"{os.path.abspath(_WORKDIR.value)}", flush=True)
  results = train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
  if jax.process_index() == 0:
    print(console.describe_results(results, _WORKDIR.value), flush=True)


if __name__ == "__main__":
  cli.run(main)
