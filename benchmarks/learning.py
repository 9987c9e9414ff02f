# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""How fast each variant learns the embedded default task.

Trains configs/synthetic.py and its variants (same budget, same seeds) on
synthetic_traffic_signs/textures and reports, per variant, the final test
accuracy (mean and spread over seeds), the covered-sign fraction, the time
per step, and the accuracy at each evaluation against wall-clock minutes.

  python -m benchmarks.learning [--variants=default,random] [--seeds=0,1,2]
                                [--num_train_steps=500]

Variants: default (configs/synthetic.py: the reader pretrained on texture
patches, written once by tools/pretrain_reader.py when missing, soft patches,
exact conditional gradient, patches centred on their score cells, no entropy
regulariser); scratch (configs/synthetic.py:scratch: the same from random
initialisation); random (random patches in training and evaluation, no
scorer);
downscaled_cnn (the feature network on the image downscaled 8x); diagonal
(the released gradient); plain_estimator (variance_reduction="none");
sampled_patches (train_patches="sampled", straight-through);
score_function (train_patches="score_function", 4 selections per image);
entropy_regularizer (0.01, the earlier default); edge_scorer (16x16 score
windows that overlap, the earlier default); released_grid (the released
patch geometry); small_sigma (sigma 0.05 -> 0, the paper's); large_sigma
(0.5 -> 0, the earlier default); zero_padding;
sinkhorn; perturbed_eval (perturbed Top-K at evaluation, with the training
sigma). Each run takes minutes on a CPU: the full table (17 variants x
3 seeds) is a long run; use an accelerator or a subset. A run of a subset
replaces those (variant, seed) rows in the results and keeps the others
(--nokeep_recorded_runs starts the results afresh).

`--mnist` runs the Megapixel MNIST rows on real handwriting
(configs/megapixel_mnist.py on megapixel_mnist/cpu, built beforehand with
`python -m ptopk_patch_selection.tools.build_dataset
--dataset=megapixel_mnist/cpu`): mnist (the reader pretrained on texture
patches, not on digits), mnist_scratch (from random initialisation),
mnist_random (random patches in training and evaluation) and
mnist_downscaled_cnn (the feature network on the image downscaled 8x).

`--long` runs the paper's relational comparison instead: the billiard model
with its transformer aggregator vs mean pooling (configs/synthetic_billiard.py
and its `:mean` variant) on synthetic_billiard/paper, built beforehand with
`python -m ptopk_patch_selection.tools.build_dataset
--dataset=synthetic_billiard/paper`. That is an accelerator's job (the
paper trains 70k steps); --num_train_steps shortens it.

Writes benchmarks/results/learning.{json,md} and learning.png (accuracy over
time).
"""

import os
import tempfile
import time

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import megapixel_mnist  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import synthetic_billiard  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position
from ptopk_patch_selection import console  # pylint: disable=g-import-not-at-top,wrong-import-position
from ptopk_patch_selection import metrics_io  # pylint: disable=g-import-not-at-top,wrong-import-position
from ptopk_patch_selection import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from ptopk_patch_selection.tools import pretrain_reader  # pylint: disable=g-import-not-at-top,wrong-import-position

# Overrides of configs/synthetic.py, as (dotted field, value) pairs.
VARIANTS = {
    "default": (),
    "scratch": (),  # configs/synthetic.py:scratch (_CONFIG_VARIANTS)
    "random": (("model.selection", "random"),
               ("model.selection_eval", "random")),
    "downscaled_cnn": (("model.name", "whole_image"),
                       ("model.whole_image_downscale", 8)),
    "diagonal": (("model.perturbed.gradient", "diagonal"),
                 ("model.perturbed.variance_reduction", "none")),
    "plain_estimator": (("model.perturbed.variance_reduction", "none"),),
    "sampled_patches": (("model.train_patches", "sampled"),),
    "score_function": (("model.train_patches", "score_function"),),
    "entropy_regularizer": (("entropy_regularizer", 0.01),),
    "edge_scorer": (("model.scorer_padding", "edge"),),
    "released_grid": (("model.patch_grid", "released"),),
    "small_sigma": (("sigma", 0.05),),
    "large_sigma": (("sigma", 0.5),),
    "zero_padding": (("model.patch_padding", "constant"),),
    "sinkhorn": (("model.selection", "sinkhorn"),
                 ("model.sinkhorn.epsilon", 1e-2),
                 ("model.sinkhorn.num_iterations", 200)),
    "perturbed_eval": (("model.selection_eval", "perturbed"),),
}

# Variants that start from a variant of configs/synthetic.py.
_CONFIG_VARIANTS = {"scratch": "scratch"}

# --long: configs/synthetic_billiard.py variants.
LONG_VARIANTS = {"billiard_transformer": "", "billiard_mean": "mean"}

# --mnist: configs/megapixel_mnist.py variants on megapixel_mnist/cpu.
MNIST_VARIANTS = {"mnist": "cpu", "mnist_scratch": "cpu,scratch",
                  "mnist_random": "cpu,random",
                  "mnist_downscaled_cnn": "cpu,downscaled_cnn"}

_VARIANTS = flags.DEFINE_list("variants", None,
                              "Variants to run (default: all of the mode).")
_LONG = flags.DEFINE_bool("long", False, "Run the billiard comparison.")
_MNIST = flags.DEFINE_bool("mnist", False,
                           "Run the Megapixel MNIST rows (MNIST_VARIANTS).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds per variant.")
_NUM_TRAIN_STEPS = flags.DEFINE_integer("num_train_steps", None,
                                        "Override the default's budget.")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "Built datasets.")
_RUNS_DIR = flags.DEFINE_string("runs_dir", None,
                               "Where runs go (default: a temp dir).")
_KEEP_RECORDED_RUNS = flags.DEFINE_bool(
    "keep_recorded_runs", True, "Keep the recorded runs of other (variant, "
    "seed) pairs; false: the results hold this invocation's runs only.")


def variant_config(name: str, seed: int, num_train_steps: int | None = None):
  """The variant's config (overrides of configs/synthetic.py, or a
  configs/synthetic_billiard.py variant) with the seed, evaluated five times
  and checkpointed at the end."""
  if name in LONG_VARIANTS:
    config = synthetic_billiard.get_config(LONG_VARIANTS[name])
  elif name in MNIST_VARIANTS:
    config = megapixel_mnist.get_config(MNIST_VARIANTS[name])
  elif name in VARIANTS:
    config = synthetic.get_config(_CONFIG_VARIANTS.get(name, ""))
  else:
    raise ValueError(
        f"Unknown variant {name!r}; expected one of "
        f"{sorted(VARIANTS) + sorted(LONG_VARIANTS) + sorted(MNIST_VARIANTS)}.")
  config.seed = seed
  if num_train_steps:
    config.num_train_steps = num_train_steps
  # Five points per accuracy curve (evaluation consumes no training RNG, so
  # the final figures do not depend on how often it runs).
  config.eval_every_steps = max(config.num_train_steps // 5, 1)
  config.checkpoint_every_steps = config.num_train_steps
  return common.override(config, VARIANTS.get(name, ()))


def run(name: str, seed: int, workdir: str, data_dir: str,
        num_train_steps: int | None = None) -> dict:
  """Trains one variant and seed; its final metrics and accuracy curve."""
  config = variant_config(name, seed, num_train_steps)
  config.dataset.data_dir = data_dir
  if config.model.pretrained_checkpoint:  # pretrained once, then reused
    pretrain_reader.ensure_pretrained(config.model)
  start = time.time()
  results = train.train_and_evaluate(config, workdir)
  seconds = time.time() - start
  frame = metrics_io.read_metrics(workdir)
  accuracy = frame[(frame.split == "eval") & (frame.name == "accuracy")]
  seconds_per_step = seconds / config.num_train_steps
  return dict(variant=name, seed=seed, steps=config.num_train_steps,
              accuracy=results["accuracy"],
              coverage=results.get("coverage", float("nan")),
              majority_rate=results["majority_rate"],
              seconds_per_step=seconds_per_step,
              curve_minutes=[s * seconds_per_step / 60 for s in accuracy.step],
              curve_accuracy=list(accuracy.value))


def merge_runs(recorded: list[dict], runs: list[dict]) -> list[dict]:
  """`recorded` with the (variant, seed) rows of `runs` replaced or added."""
  new = {(r["variant"], r["seed"]): r for r in runs}
  kept = [r for r in recorded if (r["variant"], r["seed"]) not in new]
  return kept + runs


def summarize(runs: list[dict]) -> tuple[str, list[list]]:
  """Markdown table rows: one per variant, mean and spread over seeds."""
  rows = []
  for name in dict.fromkeys(r["variant"] for r in runs):
    mine = [r for r in runs if r["variant"] == name]
    accuracy = np.array([r["accuracy"] for r in mine])
    coverage = [r["coverage"] for r in mine if np.isfinite(r["coverage"])]
    rows.append([name, ",".join(str(r["seed"]) for r in mine),
                 "/".join(sorted({str(r["steps"]) for r in mine})),
                 float(accuracy.mean()),
                 float(accuracy.max() - accuracy.min()),
                 float(np.mean(coverage)) if coverage else "-",
                 float(np.mean([r["seconds_per_step"] for r in mine]))])
  table = common.markdown_table(
      ["variant", "seeds", "steps", "accuracy", "spread (max-min)",
       "covered target", "s / step"], rows)
  return table, rows


def plot_curves(runs: list[dict], path: str) -> None:
  figure, axis = plt.subplots(figsize=(7, 4))
  for colour, name in enumerate(dict.fromkeys(r["variant"] for r in runs)):
    for i, r in enumerate(r for r in runs if r["variant"] == name):
      axis.plot(r["curve_minutes"], r["curve_accuracy"], marker=".",
                color=f"C{colour % 10}", label=name if i == 0 else None)
  axis.set_xlabel("minutes of training")
  axis.set_ylabel("test accuracy")
  axis.legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path)
  plt.close(figure)


def main(argv):
  del argv
  console.quiet_library_logs()
  root = _RUNS_DIR.value or tempfile.mkdtemp(prefix="learning_")
  runs = []
  names = _VARIANTS.value or list(
      LONG_VARIANTS if _LONG.value else
      MNIST_VARIANTS if _MNIST.value else VARIANTS)
  for name in names:
    for seed in map(int, _SEEDS.value):
      print(f"[learning] {name}, seed {seed}", flush=True)
      runs.append(run(name, seed, os.path.join(root, f"{name}_{seed}"),
                      _DATA_DIR.value, _NUM_TRAIN_STEPS.value))
  name = "learning_long" if _LONG.value else "learning"
  if _KEEP_RECORDED_RUNS.value:
    runs = merge_runs(common.read_results(name).get("runs", []), runs)
  table, _ = summarize(runs)
  machine = common.machine_description()
  table = (f"{machine['backend']} with {machine['cpu_count']} cores; steps: "
           "training steps per run; s / step is wall time including "
           "compilation and evaluations.\n\n" + table)
  print(table)
  plot_curves(runs, os.path.join(common.RESULTS_DIR, f"{name}.png"))
  print("wrote", common.write_results(
      name, {"machine": machine, "runs": runs},
      table + f"\n\n![accuracy over time](benchmarks/results/{name}.png)"))


if __name__ == "__main__":
  app.run(main)
