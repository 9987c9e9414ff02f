# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Copies benchmarks/results/<name>.md into the pages that show it.

A page is README.md or any docs/*.md. It holds, for each benchmark NAME it
shows,
  <!-- results:NAME -->
  ...
  <!-- /results:NAME -->
and this script replaces what is between them with results/NAME.md. Each
NAME is shown by one page. A results file writes its links (the learning
curves' picture) relative to the repository root; in a page under docs/ they
are rewritten relative to that page.

  python -m benchmarks.update_readme      # after python -m benchmarks.NAME
"""

import glob
import os
import re

from benchmarks import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")

_BLOCK = re.compile(r"<!-- results:(\w+) -->.*?<!-- /results:\1 -->",
                    re.DOTALL)
# A markdown link or picture target: ](target) with no scheme and no anchor.
_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)\)")


def _rebase_links(body: str, page_dir: str) -> str:
  """Root-relative link targets in body made relative to page_dir."""
  if not page_dir:
    return body
  def rebase(match):
    target = os.path.relpath(match.group(1), page_dir).replace(os.sep, "/")
    return f"]({target})"
  return _LINK.sub(rebase, body)


def update(readme_text: str, results_dir: str, page_dir: str = "") -> str:
  """readme_text with every marked block replaced by its results file.

  Args:
    readme_text: the text of a page (README.md or docs/*.md).
    results_dir: the folder of the <name>.md results files.
    page_dir: the page's folder relative to the repository root ("" for
      README.md, "docs" for a docs page), for the links of the results.

  Returns:
    The text with each block whose results file exists replaced; blocks
    without one are kept as they are.
  """
  def replace(match):
    name = match.group(1)
    path = os.path.join(results_dir, f"{name}.md")
    if not os.path.exists(path):
      return match.group(0)
    with open(path) as f:
      body = _rebase_links(f.read().strip(), page_dir)
    return f"<!-- results:{name} -->\n{body}\n<!-- /results:{name} -->"
  return _BLOCK.sub(replace, readme_text)


def pages(root: str = ROOT) -> list[str]:
  """The pages that may show results: README.md and docs/*.md, root-relative."""
  found = []
  if os.path.exists(os.path.join(root, "README.md")):
    found.append("README.md")
  found += sorted(os.path.relpath(path, root) for path in
                  glob.glob(os.path.join(root, "docs", "*.md")))
  return found


def shown_blocks(root: str = ROOT) -> dict[str, list[str]]:
  """For each results NAME marked in a page, the pages that mark it."""
  shown = {}
  for page in pages(root):
    with open(os.path.join(root, page)) as f:
      for match in _BLOCK.finditer(f.read()):
        shown.setdefault(match.group(1), []).append(page)
  return shown


def update_pages(root: str, results_dir: str) -> list[str]:
  """Rewrites the marked blocks of every page; returns the pages changed."""
  changed = []
  for page in pages(root):
    path = os.path.join(root, page)
    with open(path) as f:
      text = f.read()
    updated = update(text, results_dir, os.path.dirname(page))
    if updated != text:
      with open(path, "w") as f:
        f.write(updated)
      changed.append(page)
  return changed


def main():
  changed = update_pages(ROOT, common.RESULTS_DIR)
  print("results updated in", ", ".join(changed) if changed else "no page")
  shown = shown_blocks(ROOT)
  for name, where in sorted(shown.items()):
    if len(where) > 1:
      print(f"warning: results:{name} is in several pages: {where}")
  for path in sorted(glob.glob(os.path.join(common.RESULTS_DIR, "*.md"))):
    name = os.path.splitext(os.path.basename(path))[0]
    if name not in shown:
      print(f"warning: no page shows results:{name} (add its markers to "
            "README.md or a docs/*.md page)")


if __name__ == "__main__":
  main()
