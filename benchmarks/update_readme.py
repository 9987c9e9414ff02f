# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Copies benchmarks/results/<name>.md into README.md between its markers.

README.md holds, for each benchmark NAME,
  <!-- results:NAME -->
  ...
  <!-- /results:NAME -->
and this script replaces what is between them with results/NAME.md.

  python -m benchmarks.update_readme
"""

import os
import re

from benchmarks import common

README = os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")


def update(readme_text: str, results_dir: str) -> str:
  """readme_text with every marked block replaced by its results file."""
  def replace(match):
    name = match.group(1)
    path = os.path.join(results_dir, f"{name}.md")
    if not os.path.exists(path):
      return match.group(0)
    with open(path) as f:
      body = f.read().strip()
    return f"<!-- results:{name} -->\n{body}\n<!-- /results:{name} -->"
  return re.sub(r"<!-- results:(\w+) -->.*?<!-- /results:\1 -->", replace,
                readme_text, flags=re.DOTALL)


def main():
  with open(README) as f:
    text = f.read()
  updated = update(text, common.RESULTS_DIR)
  with open(README, "w") as f:
    f.write(updated)
  print("README.md results", "updated" if updated != text else "unchanged")


if __name__ == "__main__":
  main()
