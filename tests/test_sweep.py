# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The released sweeps print commands that main's flags accept."""

import functools
import shlex

from absl import flags
from ml_collections import config_flags
import pytest

from ptopk_patch_selection import errors
from ptopk_patch_selection import sweep


def _parsed(command):
  """main's --config/--workdir flags parsed from one printed command."""
  argv = shlex.split(command)
  assert argv[:3] == ["python", "-m", "ptopk_patch_selection.main"]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values,
                                  lock_config=True,
                                  sys_argv=["main"] + argv[3:])
  flags.DEFINE_string("workdir", None, "", flag_values=values)
  values(["main"] + argv[3:])
  return values.config, values.workdir


@pytest.mark.parametrize("config, count, fields", [
    ("configs/cub.py", 10, ("model.k", "seed")),
    ("configs/cub.py:train_val", 10, ("model.k", "seed")),
    ("configs/traffic_cnn.py", 20, ("seed", "learning_rate")),
])
def test_sweep_commands_resolve_to_real_fields(config, count, fields):
  lines = sweep.commands(config, "runs", ["--config.batch_size=8"])
  assert len(lines) == count
  points = []
  for line in lines:
    parsed, workdir = _parsed(line)
    point = tuple(functools.reduce(getattr, field.split("."), parsed)
                  for field in fields)
    assert workdir == "runs/" + ",".join(
        f"{f}={v!r}" for f, v in zip(fields, point))
    assert parsed.batch_size == 8
    points.append(point)
  assert len(set(points)) == count
  if config.startswith("configs/cub.py"):
    assert set(points) == {(k, s) for k in (2, 4) for s in (3, 5, 7, 9, 11)}
  else:
    assert set(points) == {(s, lr) for s in range(5)
                           for lr in (1e-3, 5e-4, 1e-4, 5e-5)}
  if config.endswith("train_val"):
    assert parsed.dataset.train_split == "train[:5000]"


def test_a_config_without_a_sweep_says_which_have_one():
  with pytest.raises(errors.ConfigError, match="configs/cub.py"):
    sweep.commands("configs/traffic.py", "runs")
