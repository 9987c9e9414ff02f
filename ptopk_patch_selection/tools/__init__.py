# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Command-line tools around the data: build_dataset, show_dataset.

  python -m ptopk_patch_selection.tools.build_dataset --dataset=NAME[/CONFIG]
  python -m ptopk_patch_selection.tools.show_dataset --dataset=NAME[/CONFIG]

They sit above datasets/ and input_pipeline (build_dataset reads one epoch
through the pipeline), so the data package imports neither.
"""
