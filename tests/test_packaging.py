# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Packaging: declared dependencies, a core-only install, TFDS registration on
import, and the commands run from a folder outside the checkout.

The test marked `install` makes a virtual environment and installs the core
dependencies from the package index (about a minute with pip's cache); it
runs only when asked, with `-m install` (tests/conftest.py deselects it
otherwise).
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from ptopk_patch_selection import locations

REPO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = "ptopk_patch_selection"
# Modules of the [train] extra that the core must not import.
_TRAIN_ONLY = ("tensorflow", "tensorflow_datasets", "ml_collections")


def _lower_bound(requirement: str) -> tuple[str, str]:
  """(normalised name, version) of a `name>=version` requirement."""
  match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=(\S+)", requirement.strip())
  assert match, f"{requirement!r} is not of the form name>=version"
  return re.sub(r"[-_.]+", "-", match[1]).lower(), match[2]


def test_requirements_txt_agrees_with_pyproject():
  """Every pin of ./run.sh's install is declared, with the same bound."""
  project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
  extras = dict(project["optional-dependencies"])
  # [benchmark] (peers in benchmarks/topk_op.py) is not part of the install:
  # the benchmark reports its rows as not installed without it.
  benchmark_only = {_lower_bound(r)[0] for r in extras.pop("benchmark", [])}
  declared = {}
  for group in [project["dependencies"], *extras.values()]:
    for requirement in group:
      if not requirement.startswith(f"{PROJECT}["):  # an extra of ours
        name, bound = _lower_bound(requirement)
        assert declared.setdefault(name, bound) == bound, name
  lines = (REPO / "requirements.txt").read_text().splitlines()
  pinned = dict(_lower_bound(line) for line in lines
                if line.strip() and not line.startswith("#"))
  assert pinned == declared
  assert not benchmark_only & set(pinned)


def test_operators_and_models_import_no_tensorflow():
  code = ("import sys\n"
          "from ptopk_patch_selection import models, patches\n"
          "from ptopk_patch_selection import perturbed_topk, sinkhorn_topk\n"
          f"print(sorted(set({_TRAIN_ONLY}) & set(sys.modules)))")
  out = subprocess.run([sys.executable, "-c", code], check=True,
                       capture_output=True, text=True).stdout
  assert out.strip() == "[]"


_OPERATOR = f"""
import importlib.util
import sys

import jax
import jax.numpy as jnp

import ptopk_patch_selection
from ptopk_patch_selection import models, patches
from ptopk_patch_selection import perturbed_topk, sinkhorn_topk


def loss(scores):
  indicators = perturbed_topk.perturbed_topk(
      scores, jax.random.key(0), k=2, num_samples=8, sigma=0.5)
  return jnp.sum(indicators * jnp.arange(6.0))


gradient = jax.jit(jax.grad(loss))(jnp.linspace(0.0, 1.0, 12).reshape(2, 6))
print(gradient.shape, bool(jnp.isfinite(gradient).all()),
      bool((gradient != 0).any()))
print(ptopk_patch_selection.__file__)
print(importlib.util.find_spec("tensorflow"),
      sorted(set({_TRAIN_ONLY}) & set(sys.modules)))
"""


@pytest.mark.install
def test_core_install_runs_the_operator_without_tensorflow(tmp_path):
  """pip install of the package alone into a clean virtual environment."""
  source = tmp_path / "source"
  shutil.copytree(REPO / PROJECT, source / PROJECT,
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md", "LICENSE"):
    shutil.copy(REPO / name, source)
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  python = str(venv / "bin" / "python")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  install = subprocess.run(
      [python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
       str(source)], env=env, capture_output=True, text=True)
  if install.returncode:
    pytest.fail("pip could not install the package with its core "
                "dependencies into a fresh virtual environment (is the "
                f"package index reachable?):\n{install.stderr[-3000:]}")
  run = subprocess.run([python, "-c", _OPERATOR], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  shape_finite_nonzero, package, tensorflow = run.stdout.splitlines()
  assert shape_finite_nonzero == "(2, 6) True True"
  assert package.startswith(str(venv))  # the installed copy, not the checkout
  assert tensorflow == "None []"


def test_importing_datasets_registers_every_builder(tmp_path):
  code = ("import tensorflow_datasets as tfds\n"
          "import ptopk_patch_selection.datasets\n"
          "builder = tfds.builder('synthetic_traffic_signs/tiny', "
          f"data_dir={str(tmp_path)!r})\n"
          "print(builder.name, builder.builder_config.name,\n"
          "      builder.info.features['label'].num_classes)\n"
          "print(*(tfds.builder_cls(name).name for name in\n"
          "        ('synthetic_billiard', 'traffic_signs', 'billiard')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                       check=True, capture_output=True, text=True).stdout
  assert out.splitlines() == ["synthetic_traffic_signs tiny 4",
                              "synthetic_billiard traffic_signs billiard"]


def _outside_environment(root: pathlib.Path) -> dict[str, str]:
  """The environment of a job script: no checkout on the path, a data root."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env[locations.ROOT_ENV] = str(root)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"  # tiny shapes: cheap compiles
  return env


def test_every_config_loads_from_another_directory(tmp_path):
  """As config_flags loads them: by path, with no `configs` package."""
  code = ("import importlib.util, sys\n"
          "for path in sys.argv[1:]:\n"
          "  spec = importlib.util.spec_from_file_location('config', path)\n"
          "  module = importlib.util.module_from_spec(spec)\n"
          "  spec.loader.exec_module(module)\n"
          "  module.get_config()\n"
          "print(len(sys.argv) - 1, 'configs' in sys.modules)")
  paths = sorted(str(path) for path in (REPO / "configs").glob("*.py"))
  out = subprocess.run([sys.executable, "-c", code, *paths], cwd=tmp_path,
                       env=_outside_environment(tmp_path), check=True,
                       capture_output=True, text=True).stdout
  assert out.split() == [str(len(paths)), "False"]


@pytest.mark.slow
def test_build_main_and_visualize_run_from_another_directory(tmp_path):
  """The data folder is given relative to $PTOPK_ROOT, the workdir to cwd."""
  root, cwd = tmp_path / "root", tmp_path / "cwd"
  cwd.mkdir()
  env = _outside_environment(root)

  def run(module, *flags):
    result = subprocess.run(
        [sys.executable, "-m", f"{PROJECT}.{module}", *flags], cwd=cwd,
        env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout

  run("tools.build_dataset", "--dataset=synthetic_traffic_signs/tiny",
      "--data_dir=tfds", "--noread_epoch")
  assert (root / "tfds" / "synthetic_traffic_signs" / "tiny").is_dir()
  out = run("main", f"--config={REPO / 'configs' / 'test.py'}",
            "--workdir=workdir", "--config.dataset.data_dir=tfds",
            "--config.num_train_steps=1")
  assert (f"Data: {root / 'tfds'}, downloads: {root / 'data' / 'downloads'}"
          f", workdir: {cwd / 'workdir'}") in out
  assert (cwd / "workdir" / "checkpoints" / "1").is_dir()
  run("visualize", "--workdir=workdir", "--num_images=1")
  assert (cwd / "workdir" / "pictures" / "visualize_0.png").is_file()
