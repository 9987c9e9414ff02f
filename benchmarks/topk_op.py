# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Perturbed Top-K and soft patch extraction against the released formulation.

In one process, at the paper's settings (sigma 0.05, S = 500):
  traffic:  b=32, d=2028 (39x52 grid), k=5
  billiard: b=64, d=900 (30x30 grid), k=10
for each gradient estimator: forward + backward time (median after
compilation), temporary memory of the compiled program, and the cosine of its
gradient to a high-sample estimate (the conditional estimator with 40k
samples, 4 examples). Scores are min-max normalised to [0, 1], either a
smooth random field over the grid (like a scorer's map: neighbouring cells
correlated, a few peaks) or i.i.d. uniform (many near-ties at the top: the
hardest case for every estimator). The cotangent is the one the extractor
sends back, G[r, j] = <T_r, patch_j>, for
random images and patch targets T: it has the large per-slot offsets that
real patches give, to which the exact gradient is invariant and the released
diagonal one is not. Then the three soft extractors at traffic settings
(960x1280 images, 3 colour + 2 position channels, patches of 100). Then the
Sinkhorn Top-K's two forms (sinkhorn_topk.py) at traffic settings with the
released epsilon 1e-4 and 2000 iterations: time, memory, distance to the hard
Top-K and row-sum error of the output (how far from convergence it is).

  python -m benchmarks.topk_op [--repeats=3] [--parts=sinkhorn]

Prints ratio tables; writes benchmarks/results/topk_op.{json,md} (perturbed
and extractors) and topk_sinkhorn.{json,md}.
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import released_baselines
from ptopk_patch_selection import patches
from ptopk_patch_selection import perturbed_topk as ptopk
from ptopk_patch_selection import sinkhorn_topk

_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per measurement.")
_EXTRACTOR_REPEATS = flags.DEFINE_integer(
    "extractor_repeats", 1, "Timed runs per extractor (the released scan "
    "takes minutes on a CPU).")
_SKIP_EXTRACTORS = flags.DEFINE_bool("skip_extractors", False,
                                     "Only benchmark the Top-K operator.")
_PARTS = flags.DEFINE_list("parts", ["perturbed", "sinkhorn"],
                           "What to run: perturbed (operator and extractor "
                           "tables, topk_op.md), sinkhorn (topk_sinkhorn.md).")

SETTINGS = {
    "traffic": dict(batch=32, image_size=(960, 1280), grid=(39, 52), k=5),
    "billiard": dict(batch=64, image_size=(1000, 1000), grid=(30, 30), k=10),
}
SIGMA, NUM_SAMPLES, PATCH_SIZE = 0.05, 500, 100
COSINE_EXAMPLES, REFERENCE_SAMPLES = 4, 40_000
ESTIMATORS = {
    "released (stored one-hots, diagonal)": None,
    "diagonal, lean": dict(gradient="diagonal"),
    "exact": dict(),
    "exact, leave-one-out": dict(variance_reduction="leave_one_out"),
    "exact, conditional": dict(variance_reduction="conditional"),
}


def _operator(name, k, num_samples, key):
  options = ESTIMATORS[name]
  if options is None:
    return lambda s: released_baselines.released_perturbed_topk(
        s, key, k=k, num_samples=num_samples, sigma=SIGMA)
  return lambda s: ptopk.perturbed_topk(s, key, k=k, num_samples=num_samples,
                                        sigma=SIGMA, **options)


def _gradient_fn(operator):
  """(scores, cotangent) -> gradient of <cotangent, operator(scores)>."""
  return jax.grad(lambda s, g: jnp.sum(g * operator(s)))


def _extraction_cotangent(setting, key):
  """G = d<T, patches>/d indicators for random images and targets T."""
  grid = patches.PatchGrid(setting["image_size"], setting["grid"], PATCH_SIZE)
  image_key, target_key = jax.random.split(key)
  images = jax.random.uniform(image_key,
                              (COSINE_EXAMPLES,) + grid.image_size + (3,))
  targets = jax.random.normal(
      target_key, (COSINE_EXAMPLES, setting["k"], PATCH_SIZE, PATCH_SIZE, 3))
  weights = jnp.zeros((COSINE_EXAMPLES, setting["k"], grid.num_patches))
  # Arrays are arguments, not closed over: XLA would constant-fold them.
  return jax.jit(jax.grad(lambda w, i, t: jnp.sum(
      t * patches.extract_patches_matmul(i, w, grid))))(weights, images,
                                                         targets)


def _scores(kind, batch, grid, key):
  """(batch, d) scores in [0, 1]: "smooth" field or "uniform" noise."""
  if kind == "uniform":
    return jax.random.uniform(key, (batch, grid[0] * grid[1]))
  window = jnp.outer(jnp.hanning(9), jnp.hanning(9))
  noise = jax.random.normal(key, (batch, grid[0] + 8, grid[1] + 8))
  field = jax.vmap(lambda x: jax.scipy.signal.convolve2d(
      x, window / window.sum(), mode="valid"))(noise).reshape(batch, -1)
  low, high = field.min(1, keepdims=True), field.max(1, keepdims=True)
  return (field - low) / (high - low)


def _cosine(a, b):
  a, b = np.ravel(a), np.ravel(b)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def benchmark_operator(setting_name, score_kind):
  """Rows [estimator, time, memory, cosine] for one setting."""
  setting = SETTINGS[setting_name]
  b, k = setting["batch"], setting["k"]
  key = jax.random.key(0)
  scores = _scores(score_kind, b, setting["grid"], key)
  cotangent = jnp.tile(_extraction_cotangent(setting, key),
                       (b // COSINE_EXAMPLES, 1, 1))
  few_scores, few_cotangent = scores[:COSINE_EXAMPLES], cotangent[
      :COSINE_EXAMPLES]
  reference = np.mean([
      jax.jit(_gradient_fn(_operator("exact, conditional", k,
                                     REFERENCE_SAMPLES // 4,
                                     jax.random.key(100 + i))))(
                                         few_scores, few_cotangent)
      for i in range(4)
  ], axis=0)
  rows = []
  for name in ESTIMATORS:
    operator = _operator(name, k, NUM_SAMPLES, jax.random.key(1))
    seconds, temp = common.compile_and_time(
        _gradient_fn(operator), scores, cotangent, repeats=_REPEATS.value)
    gradient = jax.jit(_gradient_fn(operator))(few_scores, few_cotangent)
    rows.append(dict(estimator=name, scores=score_kind, time_s=seconds,
                     temp_mb=temp / 1e6, cosine=_cosine(gradient, reference)))
    print(f"  {setting_name:8s} {score_kind:7s} {name:38s} {seconds:7.3f} s "
          f"{temp / 1e6:9.1f} MB  cosine {rows[-1]['cosine']:.3f}", flush=True)
  return rows


def benchmark_extractors():
  """Rows [extractor, time, memory, max |difference|] at traffic settings."""
  setting = SETTINGS["traffic"]
  grid = patches.PatchGrid(setting["image_size"], setting["grid"], PATCH_SIZE)
  b, k = setting["batch"], setting["k"]
  key = jax.random.key(2)
  images = jax.random.uniform(key, (b,) + grid.image_size + (5,))
  indicators = ptopk.perturbed_topk(
      _scores("smooth", b, setting["grid"], key), key, k=k,
      num_samples=NUM_SAMPLES, sigma=SIGMA)
  targets = jax.random.normal(key, (b, k, PATCH_SIZE, PATCH_SIZE, 5))
  extractors = {
      "released per-position scan":
          lambda i, w: released_baselines.released_extract_patches_scan(
              i, w, grid),
      "scan over slots": lambda i, w: patches.extract_patches_scan(i, w, grid),
      "matmul (fast)": lambda i, w: patches.extract_patches_matmul(i, w, grid),
  }
  reference = jax.jit(extractors["released per-position scan"])(images,
                                                                indicators)
  rows = []
  for name, extract in extractors.items():
    fwd_bwd = jax.grad(lambda w, i, t, f=extract: jnp.sum(t * f(i, w)),
                       argnums=(0, 1))
    seconds, temp = common.compile_and_time(
        fwd_bwd, indicators, images, targets,
        repeats=_EXTRACTOR_REPEATS.value)
    difference = float(jnp.abs(jax.jit(extract)(images, indicators) -
                               reference).max())
    rows.append(dict(extractor=name, time_s=seconds, temp_mb=temp / 1e6,
                     max_abs_difference=difference))
    print(f"  {name:28s} {seconds:7.3f} s {temp / 1e6:9.1f} MB "
          f"max|diff| {difference:.2e}", flush=True)
  return rows


def benchmark_sinkhorn():
  """Rows [form, time, memory, distance to hard, row error] at traffic."""
  setting = SETTINGS["traffic"]
  b, k = setting["batch"], setting["k"]
  key = jax.random.key(3)
  scores = _scores("smooth", b, setting["grid"], key)
  d = scores.shape[1]
  _, top = jax.lax.top_k(scores, k)
  hard = ptopk.indicators_from_indices(top[:, ::-1], d)  # slots by value
  cotangent = jax.random.normal(key, (b, k, d))
  rows = []
  for form in sinkhorn_topk.FORMS:
    operator = lambda s, f=form: sinkhorn_topk.sinkhorn_topk(
        s, k=k, epsilon=1e-4, num_iterations=2000, form=f)
    seconds, temp = common.compile_and_time(
        _gradient_fn(operator), scores, cotangent, repeats=_REPEATS.value)
    output = jax.jit(operator)(scores)
    gradient = jax.jit(_gradient_fn(operator))(scores, cotangent)
    rows.append(dict(
        form=form, time_s=seconds, temp_mb=temp / 1e6,
        l1_to_hard=float(jnp.abs(output - hard).sum(-1).mean()),
        row_sum_error=float(jnp.abs(output.sum(-1) - 1).max()),
        gradient_finite=bool(jnp.isfinite(gradient).all())))
    print(f"  {form:8s} {seconds:7.3f} s {temp / 1e6:9.1f} MB "
          f"L1 to hard {rows[-1]['l1_to_hard']:.3f}", flush=True)
  # The released backward's (d, d, k + 1) Jacobian tensor, per batch.
  released_mb = b * d * d * (k + 1) * 4 / 1e6
  table = (f"Sinkhorn Top-K, traffic settings (b={b}, d={d}, k={k}), "
           "epsilon 1e-4, 2000 iterations, forward + backward. L1 to hard: "
           "mean over slots of sum_j |y_rj - hard_rj| (0 = the hard Top-K, "
           "2 = disjoint). The released backward's (d, d, k+1) tensors alone"
           f" would take {released_mb:.3g} MB per batch.\n\n")
  table += common.markdown_table(
      ["form", "fwd+bwd s", "temp MB", "L1 to hard", "max row-sum error",
       "finite gradient"],
      [[r["form"], r["time_s"], r["temp_mb"], r["l1_to_hard"],
        r["row_sum_error"], r["gradient_finite"]] for r in rows])
  return rows, table, released_mb


def main(argv):
  del argv
  if "sinkhorn" in _PARTS.value:
    print("Sinkhorn Top-K, traffic settings, forward + backward:", flush=True)
    rows, table, released_mb = benchmark_sinkhorn()
    print(table)
    print("wrote", common.write_results(
        "topk_sinkhorn", {"machine": common.machine_description(),
                          "rows": rows, "released_backward_mb": released_mb},
        table))
  if "perturbed" not in _PARTS.value:
    return
  print("Perturbed Top-K, forward + backward, S=500, sigma=0.05:", flush=True)
  results = {"machine": common.machine_description(), "operator": {},
             "extractors": []}
  table_rows = []
  for setting_name in SETTINGS:
    for score_kind in ("smooth", "uniform"):
      rows = benchmark_operator(setting_name, score_kind)
      results["operator"][f"{setting_name}/{score_kind}"] = rows
      released = rows[0]
      for row in rows:
        table_rows.append([
            setting_name, score_kind, row["estimator"], row["time_s"],
            released["time_s"] / row["time_s"], row["temp_mb"],
            released["temp_mb"] / row["temp_mb"], row["cosine"]
        ])
  table = common.markdown_table(
      ["setting", "scores", "gradient", "fwd+bwd s", "speed-up", "temp MB",
       "memory ratio", "cosine to 40k-sample"], table_rows)
  if not _SKIP_EXTRACTORS.value:
    print("Soft patch extraction, traffic settings, forward + backward:",
          flush=True)
    rows = benchmark_extractors()
    results["extractors"] = rows
    released = rows[0]
    table += "\n\n" + common.markdown_table(
        ["extractor", "fwd+bwd s", "speed-up", "temp MB", "max abs diff"],
        [[r["extractor"], r["time_s"], released["time_s"] / r["time_s"],
          r["temp_mb"], r["max_abs_difference"]] for r in rows])
  print(table)
  print("wrote", common.write_results("topk_op", results, table))


if __name__ == "__main__":
  app.run(main)
