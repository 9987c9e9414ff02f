# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""The README's code runs as shown."""

import pathlib
import re

import jax.numpy as jnp
import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet(name: str) -> str:
  """The ```python block that follows `<!-- snippet:NAME -->` in README.md."""
  text = README.read_text()
  match = re.search(
      rf"<!-- snippet:{name} -->\s*```python\n(.*?)\n```", text, re.DOTALL)
  assert match, f"README.md has no python block after <!-- snippet:{name} -->"
  return match.group(1)


def test_operator_snippet_runs_and_trains_the_scorer(capsys):
  namespace = {"__name__": "readme_snippet"}
  exec(compile(readme_snippet("operator"), str(README), "exec"), namespace)
  logits, crops = namespace["logits"], namespace["crops"]
  assert logits.shape == (2, 10)
  assert crops.shape == (2, 4, 32, 32, 3)
  assert bool(jnp.isfinite(logits).all())
  # It prints what its comment says.
  assert capsys.readouterr().out.strip() == "(2, 10) (2, 4, 32, 32, 3)"
  # The gradient reaches the scorer through the perturbed Top-K.
  scorer_grad = namespace["grads"]["params"]["Conv_0"]["kernel"]
  assert bool(jnp.isfinite(scorer_grad).all())
  assert float(jnp.abs(scorer_grad).sum()) > 0
  # Each soft patch is a blend of candidates of the image: within its range.
  images = np.asarray(namespace["images"])
  assert float(crops.min()) >= 0.0 and float(crops.max()) <= images.max() + 1e-5
