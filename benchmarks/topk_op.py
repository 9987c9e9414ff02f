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
Then the peers (--parts=peers), at both settings with the same scores and
cotangent: ours (plain, conditional, conditional with one noise draw shared
by the batch, and conditional from an "rbg" key), the released formulation,
optax's make_perturbed_fun on the same hard top-k (with and without its
baseline), OTT's soft top-k (soft_sort.topk_mask and the per-slot transport
of soft_sort.sort(topk=k); rows say "not installed" without ott-jax, the
[benchmark] extra), our two Sinkhorn forms, a straight-through top-k, and the
floor: lax.top_k of the (b*S, d) perturbed scores, forward only; and beside
it ours' per-example noise alone and with the top-k (no estimator).

  python -m benchmarks.topk_op [--repeats=3] [--parts=sinkhorn,peers]

Prints ratio tables; writes benchmarks/results/topk_op.{json,md} (perturbed
and extractors), topk_sinkhorn.{json,md} and topk_peers.{json,md}.
"""

import re
import time

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

# allow_override: tests import this module beside model_speed, which also
# defines --repeats.
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per measurement.",
                                allow_override=True)
_EXTRACTOR_REPEATS = flags.DEFINE_integer(
    "extractor_repeats", 1, "Timed runs per extractor (the released scan "
    "takes minutes on a CPU).")
_SKIP_EXTRACTORS = flags.DEFINE_bool("skip_extractors", False,
                                     "Only benchmark the Top-K operator.")
_TINY = flags.DEFINE_bool("tiny", False, "perturbed part only: tiny shapes "
                          "(TINY_SETTINGS), a check that the code runs.")
_PARTS = flags.DEFINE_list("parts", ["perturbed", "sinkhorn", "peers"],
                           "What to run: perturbed (operator and extractor "
                           "tables, topk_op.md), sinkhorn (topk_sinkhorn.md), "
                           "peers (optax, OTT, Sinkhorn, straight-through and "
                           "the lax.top_k floor, topk_peers.md).")

SETTINGS = {
    "traffic": dict(batch=32, image_size=(960, 1280), grid=(39, 52), k=5),
    "billiard": dict(batch=64, image_size=(1000, 1000), grid=(30, 30), k=10),
}
# --tiny (benchmarks/accelerator.py's dry run): the same code on shapes a CPU
# runs in seconds; its figures mean nothing.
TINY_SETTINGS = {
    "traffic": dict(batch=8, image_size=(300, 400), grid=(3, 4), k=2),
}
SIGMA, NUM_SAMPLES, PATCH_SIZE = 0.05, 500, 100
COSINE_EXAMPLES, REFERENCE_SAMPLES = 4, 40_000
ESTIMATORS = {
    "released (stored one-hots, diagonal)": None,
    "diagonal, lean": dict(gradient="diagonal"),
    "exact": dict(),
    "exact, leave-one-out": dict(variance_reduction="leave_one_out"),
    "exact, conditional": dict(variance_reduction="conditional"),
    "exact, conditional, shared noise": dict(variance_reduction="conditional",
                                             shared_noise=True),
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


def _extraction_cotangent(setting, key, patch_size=PATCH_SIZE,
                          examples=COSINE_EXAMPLES):
  """G = d<T, patches>/d indicators for random images and targets T."""
  grid = patches.PatchGrid(setting["image_size"], setting["grid"], patch_size)
  image_key, target_key = jax.random.split(key)
  images = jax.random.uniform(image_key,
                              (examples,) + grid.image_size + (3,))
  targets = jax.random.normal(
      target_key, (examples, setting["k"], patch_size, patch_size, 3))
  weights = jnp.zeros((examples, setting["k"], grid.num_patches))
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


def _reference_gradient(scores, cotangent, k, samples=REFERENCE_SAMPLES):
  """The conditional estimator's gradient with `samples` samples, in 4 runs."""
  return np.mean([
      jax.jit(_gradient_fn(_operator("exact, conditional", k, samples // 4,
                                     jax.random.key(100 + i))))(scores,
                                                                cotangent)
      for i in range(4)
  ], axis=0)


def _cosine(a, b):
  a, b = np.ravel(a), np.ravel(b)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def benchmark_operator(setting_name, score_kind, settings=SETTINGS):
  """Rows [estimator, time, memory, cosine] for one setting."""
  setting = settings[setting_name]
  b, k = setting["batch"], setting["k"]
  key = jax.random.key(0)
  scores = _scores(score_kind, b, setting["grid"], key)
  cotangent = jnp.tile(_extraction_cotangent(setting, key),
                       (b // COSINE_EXAMPLES, 1, 1))
  few_scores, few_cotangent = scores[:COSINE_EXAMPLES], cotangent[
      :COSINE_EXAMPLES]
  reference = _reference_gradient(few_scores, few_cotangent, k)
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


# Peers: the same operator as a JAX user could get it elsewhere.

PEERS_SETTINGS = ("traffic", "billiard")
SINKHORN_EPSILON, SINKHORN_ITERATIONS = 1e-4, 2000
STRAIGHT_THROUGH_TEMPERATURE = SIGMA
FLOOR = "floor: lax.top_k alone"
OURS = "ours, exact conditional"
OURS_SHARED = "ours, exact conditional, shared noise"
OURS_RBG = "ours, exact conditional, rbg key"
NOISE_FLOOR = "floor: noise + lax.top_k, in ours' chunks"
OTT_MISSING = "not installed: pip install ott-jax"


class _NotInstalled(ImportError):
  """An optional peer's package is missing (its row says so)."""


def _hard_topk(x, k):
  """Hard top-k of (..., d): one-hot rows sorted by position, (..., k, d)."""
  return ptopk.indicators_from_indices(ptopk.topk_indices(x, k), x.shape[-1])


def _by_position(indicators, scores, k):
  """Puts the slots of a by-value soft top-k (slot r: the (r+1)-th smallest
  of the top k, as in Sinkhorn/OT) in raster order, like ours: a constant
  permutation taken from the hard top-k of the scores."""
  _, top = jax.lax.top_k(jax.lax.stop_gradient(scores), k)
  order = jnp.argsort(top[:, ::-1], axis=-1)  # by-value slots by position
  return jnp.take_along_axis(indicators, order[:, :, None], axis=1)


def _mask_as_slots(mask, scores, k):
  """(b, d) soft mask -> (b, k, d) for a per-slot cotangent.

  Each position's mask value goes to the slot it takes in raster order
  among the hard top-k (the k-th slot for unselected positions after the
  last selected one): a constant layout, so the slots sum to the mask and
  <G, layout> = sum_j G[slot(j), j] mask_j.
  """
  chosen = ptopk.topk_indices(jax.lax.stop_gradient(scores), k)  # (b, k)
  before = (chosen[:, :, None] < jnp.arange(scores.shape[-1])).sum(1)
  slot = jnp.minimum(before, k - 1)  # (b, d)
  return mask[:, None, :] * jax.nn.one_hot(slot, k, axis=1)


def _ott_soft_sort():
  try:
    from ott.tools import soft_sort  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise _NotInstalled(OTT_MISSING) from error
  return soft_sort


def _ott_transport(x, target_weights, implicit):
  """OTT's plan (d, m) from the d scores of one example to m sorted targets
  (soft_sort.transport_for_sort with its defaults: epsilon 1e-2, scores
  squashed by a sigmoid of their whitened values)."""
  soft_sort = _ott_soft_sort()
  d = x.shape[-1]
  options = {} if implicit else {"implicit_diff": None}
  return soft_sort.transport_for_sort(x, jnp.full((d,), 1.0 / d),
                                      target_weights, **options).matrix


def _ott_slots(k, implicit):
  """Per-slot soft top-k: the plan that soft_sort.sort(topk=k) builds
  (targets of mass (d-k)/d, 1/d, ..., 1/d), as d * P[:, 1:]^T."""
  _ott_soft_sort()

  def one(x):
    d = x.shape[-1]
    weights = jnp.concatenate([jnp.array([(d - k) / d]),
                               jnp.full((k,), 1.0 / d)])
    return d * _ott_transport(x, weights, implicit)[:, 1:].T

  return lambda s: _by_position(jax.vmap(one)(s), s, k)


def _ott_mask(k, implicit_diff_default):
  """soft_sort.topk_mask (defaults), or the same mask, d * P[:, 1] of its
  two-target transport, differentiated by unrolling."""
  soft_sort = _ott_soft_sort()
  if implicit_diff_default:
    return lambda s: soft_sort.topk_mask(s, axis=-1, k=k)

  def one(x):
    d = x.shape[-1]
    weights = jnp.array([1.0 - k / d, k / d])
    return d * _ott_transport(x, weights, implicit=False)[:, 1]

  return jax.vmap(one)


def _optax_perturbed(k, num_samples, key, sigma, use_baseline):
  from optax import perturbations  # pylint: disable=g-import-not-at-top
  perturbed = perturbations.make_perturbed_fun(
      lambda x: _hard_topk(x, k), num_samples=num_samples, sigma=sigma,
      noise=perturbations.Normal(), use_baseline=use_baseline)
  return lambda s: jax.vmap(perturbed)(jax.random.split(key, s.shape[0]), s)


def _straight_through(k, temperature):
  """Forward: the hard top-k. Backward: the gradient of softmax(s / T),
  the same in every slot (hard + soft - stop_gradient(soft))."""
  def operator(s):
    hard = _hard_topk(jax.lax.stop_gradient(s), k)
    soft = jnp.broadcast_to(jax.nn.softmax(s / temperature, -1)[:, None],
                            hard.shape)
    return hard + soft - jax.lax.stop_gradient(soft)
  return operator


def _perturbed_scores(scores, key, num_samples, sigma):
  """(b * S, d): every example's S perturbed copies."""
  b, d = scores.shape
  noise = jax.random.normal(key, (b, num_samples, d))
  return (scores[:, None] + sigma * noise).reshape(b * num_samples, d)


def _in_noise_chunks(scores, key, num_samples, consume):
  """consume(noise) over ours' chunks of per-example normal noise (b, C, d),
  drawn by `perturbed_topk`'s own functions, stacked over the chunks."""
  b, d = scores.shape
  # pylint: disable=protected-access
  opts = ptopk._Options(
      k=1, num_samples=num_samples,
      chunk_size=ptopk.chunk_size_used(num_samples, ptopk.DEFAULT_CHUNK_SIZE,
                                       False),
      gradient="exact", noise="normal", variance_reduction="none",
      shared_noise=False, batch=b)
  keys = ptopk._example_keys(key, b, opts)
  return jax.lax.map(
      lambda chunk: consume(ptopk._batch_noise(keys, chunk, opts, d)),
      jnp.arange(num_samples // opts.chunk_size))
  # pylint: enable=protected-access


def peer_specs(k, num_samples, key, sigma=SIGMA):
  """name -> dict(build, output, note).

  build() returns the operator (b, d) scores -> (b, k, d) indicators in
  raster-order slots ("slots"), a (b, d) soft mask ("mask"), or, for the
  forward-only floors ("floor"), a function of the arguments that
  `inputs(scores)` makes. It raises if the peer cannot be built (not
  installed).
  """
  specs = {
      "ours, exact (no variance reduction)": dict(
          build=lambda: _operator("exact", k, num_samples, key),
          output="slots", note="perturbed_topk"),
      OURS: dict(
          build=lambda: _operator("exact, conditional", k, num_samples, key),
          output="slots", note="perturbed_topk, "
          "variance_reduction='conditional'"),
      OURS_SHARED: dict(
          build=lambda: _operator("exact, conditional, shared noise", k,
                                  num_samples, key),
          output="slots", note="the same, shared_noise=True: one (S, d) "
          "draw for the batch"),
      OURS_RBG: dict(
          build=lambda: _operator("exact, conditional", k, num_samples,
                                  jax.random.key(1, impl="rbg")),
          output="slots", note="the same, per-example noise, from a key of "
          "jax.random.key(seed, impl='rbg'): XLA's RngBitGenerator instead "
          "of threefry"),
      "released (stored one-hots, diagonal)": dict(
          build=lambda: _operator("released (stored one-hots, diagonal)", k,
                                  num_samples, key),
          output="slots", note="the released formulation"),
      "optax make_perturbed_fun, use_baseline=True": dict(
          build=lambda: _optax_perturbed(k, num_samples, key, sigma, True),
          output="slots", note="Normal noise, on the hard top-k (k, d); "
          "baseline f(scores) (its default), vmapped over the batch"),
      "optax make_perturbed_fun, use_baseline=False": dict(
          build=lambda: _optax_perturbed(k, num_samples, key, sigma, False),
          output="slots", note="the same without the baseline"),
      "ott soft_sort.topk_mask": dict(
          build=lambda: _ott_mask(k, True), output="mask",
          note="(d,) mask only, defaults (epsilon 1e-2 on sigmoid-whitened "
          "scores, implicit differentiation); gradient through a fixed slot "
          "layout"),
      "ott topk_mask's transport, unrolled": dict(
          build=lambda: _ott_mask(k, False), output="mask",
          note="the same mask, d P[:, 1], differentiated by unrolling "
          "Sinkhorn (implicit_diff=None)"),
      "ott sort(topk=k)'s transport, per slot": dict(
          build=lambda: _ott_slots(k, True), output="slots",
          note="d P[:, 1:] of transport_for_sort with sort(topk=k)'s "
          "weights, defaults (implicit differentiation); slots by value, "
          "put in raster order"),
      "ott sort(topk=k)'s transport, per slot, unrolled": dict(
          build=lambda: _ott_slots(k, False), output="slots",
          note="the same, implicit_diff=None"),
  }
  for form in sinkhorn_topk.FORMS:
    specs[f"ours Sinkhorn, form={form}"] = dict(
        build=lambda f=form: lambda s: _by_position(
            sinkhorn_topk.sinkhorn_topk(
                s, k=k, epsilon=SINKHORN_EPSILON,
                num_iterations=SINKHORN_ITERATIONS, form=f), s, k),
        output="slots", note=f"sinkhorn_topk, epsilon {SINKHORN_EPSILON:g},"
        f" {SINKHORN_ITERATIONS} iterations; slots by value, put in raster "
        "order")
  specs["straight-through (softmax)"] = dict(
      build=lambda: _straight_through(k, STRAIGHT_THROUGH_TEMPERATURE),
      output="slots", note="forward: hard top-k; backward: gradient of "
      f"softmax(scores / {STRAIGHT_THROUGH_TEMPERATURE:g}) in every slot")
  specs[FLOOR] = dict(
      build=lambda: lambda x: jax.lax.top_k(x, k), output="floor",
      inputs=lambda s: (_perturbed_scores(s, key, num_samples, sigma),),
      note="forward only: lax.top_k of the (b*S, d) perturbed scores, "
      "given")
  specs["floor: noise alone, in ours' chunks"] = dict(
      build=lambda: lambda s: _in_noise_chunks(
          s, key, num_samples, jnp.sum).sum(),
      output="floor", inputs=lambda s: (s,),
      note="forward only: the (b, S, d) normal numbers of a noise draw per "
      "example, drawn in ours' chunks and summed")
  specs[NOISE_FLOOR] = dict(
      build=lambda: lambda s: _in_noise_chunks(
          s, key, num_samples,
          lambda z: jax.lax.top_k(s[:, None] + sigma * z, k)[1]),
      output="floor", inputs=lambda s: (s,),
      note="forward only: the same noise, added, lax.top_k: what a "
      "sampling estimator with a noise draw per example pays before any "
      "estimator work")
  specs["ours, forward only"] = dict(
      build=lambda: _operator("exact, conditional", k, num_samples, key),
      output="forward", inputs=lambda s: (s,),
      note="perturbed_topk's forward (the same for every estimator)")
  return specs


def _reason(error):
  """The first informative line of an exception, for a row's note."""
  if isinstance(error, _NotInstalled):
    return str(error)
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  for line in lines:
    match = re.search(r"(\w*(?:Error|Exception)): (.*\S)", line)
    if match and not match[2].startswith(("Traceback", "Above is")):
      sentence = match[2].split(". ")[0]  # messages wrap mid-sentence
      return f"{match[1].lstrip('_')}: {sentence}"[:200]
  return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200]


def benchmark_peers(setting, *, num_samples=NUM_SAMPLES, sigma=SIGMA,
                    examples=COSINE_EXAMPLES,
                    reference_samples=REFERENCE_SAMPLES,
                    patch_size=PATCH_SIZE, repeats=3, extra_peers=None):
  """Rows of every peer at one setting (a dict like SETTINGS' values).

  Smooth scores and the extraction cotangent as in `benchmark_operator`.
  Each row: time_s and temp_mb of forward + backward (forward only for the
  floors); cosine and norm_ratio (|g| / |g_ref|) of the gradient on the
  first `examples` examples to the conditional estimator's with
  `reference_samples` samples; distance of the forward output to the hard
  top-k; x_floor = time_s / the lax.top_k floor's; `reason` when a figure
  is missing (the peer failed, or its gradient is not finite).
  `extra_peers` are added to `peer_specs`.
  """
  b, k = setting["batch"], setting["k"]
  key = jax.random.key(0)
  scores = _scores("smooth", b, setting["grid"], key)
  cotangent = jnp.tile(
      _extraction_cotangent(setting, key, patch_size, examples),
      (b // examples, 1, 1))
  few_scores, few_cotangent = scores[:examples], cotangent[:examples]
  # float64: a nearly hard relaxation's gradient can be tiny (1e-25).
  reference = _reference_gradient(few_scores, few_cotangent, k,
                                  reference_samples).astype(np.float64)
  hard = _hard_topk(scores, k)
  specs = peer_specs(k, num_samples, jax.random.key(1), sigma)
  specs.update(extra_peers or {})
  rows = []
  for name, spec in specs.items():
    start = time.perf_counter()
    row = dict(peer=name, output=spec["output"], note=spec["note"],
               time_s=None, temp_mb=None, x_floor=None, cosine=None,
               norm_ratio=None, distance=None, mask_distance=None,
               reason=None)
    try:
      operator = spec["build"]()
      if spec["output"] in ("floor", "forward"):
        row["time_s"], temp = common.compile_and_time(
            operator, *spec["inputs"](scores), repeats=repeats)
        row["temp_mb"] = temp / 1e6
      else:
        as_slots = operator if spec["output"] == "slots" else (
            lambda s, f=operator: _mask_as_slots(f(s), s, k))
        row["time_s"], temp = common.compile_and_time(
            _gradient_fn(as_slots), scores, cotangent, repeats=repeats)
        row["temp_mb"] = temp / 1e6
        output = jax.jit(operator)(scores)
        if spec["output"] == "slots":
          row["distance"] = float(jnp.abs(output - hard).sum(-1).mean())
          output = output.sum(1)
        row["mask_distance"] = float(
            (jnp.abs(output - hard.sum(1)).sum(-1) / k).mean())
        gradient = np.asarray(
            jax.jit(_gradient_fn(as_slots))(few_scores, few_cotangent),
            np.float64)
        bad = int((~np.isfinite(gradient)).sum())
        if bad:
          row["reason"] = (f"gradient not finite ({bad} of {gradient.size} "
                           "entries)")
        elif not np.any(gradient):
          row["norm_ratio"] = 0.0
          row["reason"] = "gradient is exactly zero: no cosine"
        else:
          row["cosine"] = _cosine(gradient, reference)
          row["norm_ratio"] = float(np.linalg.norm(gradient) /
                                    np.linalg.norm(reference))
    except Exception as error:  # pylint: disable=broad-except
      row["reason"] = _reason(error)
    rows.append(row)
    figures = ", ".join(f"{field} {row[field]:.3g}" for field in (
        "time_s", "temp_mb", "cosine", "norm_ratio", "distance",
        "mask_distance")
                        if row[field] is not None)
    print(f"  {name:50s} {figures} {row['reason'] or ''} "
          f"[{time.perf_counter() - start:.0f} s]", flush=True)
  floor = next(r["time_s"] for r in rows if r["peer"] == FLOOR)
  for row in rows:
    if row["time_s"] is not None and floor:
      row["x_floor"] = row["time_s"] / floor
  return rows


def _peer_summary(setting_name, rows):
  """One line: ours against the floor and the most accurate other peer."""
  by_name = {r["peer"]: r for r in rows}
  ours = by_name[OURS]
  others = [r for r in rows if r["cosine"] is not None and
            not r["peer"].startswith("ours")]
  line = f"{setting_name}: ours (conditional) "
  if ours["time_s"] is None or ours["cosine"] is None:
    return line + f"failed: {ours['reason']}"
  line += (f"{ours['time_s']:.3g} s = {ours['x_floor']:.3g}x the lax.top_k "
           f"floor, cosine {ours['cosine']:.3f}, norm ratio "
           f"{ours['norm_ratio']:.3f}")
  shared = by_name.get(OURS_SHARED)
  if shared and shared["time_s"] is not None and shared["cosine"] is not None:
    line += (f"; with shared noise {shared['time_s']:.3g} s = "
             f"{shared['x_floor']:.3g}x, cosine {shared['cosine']:.3f}, norm "
             f"ratio {shared['norm_ratio']:.3f}")
  rbg = by_name.get(OURS_RBG)
  if rbg and rbg["x_floor"] is not None:
    line += f"; with an rbg key {rbg['x_floor']:.3g}x"
  noise = by_name.get(NOISE_FLOOR)
  if noise and noise["x_floor"] is not None:
    line += (f"; per-example noise + lax.top_k alone, no estimator: "
             f"{noise['x_floor']:.3g}x")
  if others:
    best = max(others, key=lambda r: r["cosine"])
    line += (f"; most accurate other peer: {best['peer']}, cosine "
             f"{best['cosine']:.3f}, norm ratio {best['norm_ratio']:.3f}, "
             f"{best['time_s']:.3g} s")
  return line + "."


def peers_table(results):
  """Markdown of {setting: rows} from `benchmark_peers`."""
  def cell(value):
    return "—" if value is None else value
  table_rows = []
  for setting_name, rows in results.items():
    for r in rows:
      note = r["note"] + (f"; **{r['reason']}**" if r["reason"] else "")
      table_rows.append([cell(v) for v in (
          setting_name, r["peer"], r["time_s"], r["x_floor"], r["temp_mb"],
          r["cosine"], r["norm_ratio"], r["distance"],
          r["mask_distance"])] + [note])
  text = (
      f"Top-K operator and its peers, one process, same inputs: smooth "
      f"scores, the extraction cotangent, S={NUM_SAMPLES} samples and "
      f"sigma={SIGMA} for the sampling rows. Time: forward + backward, "
      "median after compilation (forward only for the floors and ours' "
      "forward); x floor: "
      "that time over lax.top_k of the (b*S, d) perturbed scores, which "
      "every sampling estimator pays at least once. Cosine and norm ratio "
      "|g| / |g_ref|: the gradient on "
      f"{COSINE_EXAMPLES} examples against the conditional estimator's with "
      f"{REFERENCE_SAMPLES // 1000}k samples, the gradient of the "
      f"sigma={SIGMA} perturbed objective; the deterministic relaxations "
      "(OT, Sinkhorn, straight-through) smooth differently, so for them it "
      "measures agreement with that objective, not their own error. "
      "Distances to the hard top-k, 0 for it and 2 for a disjoint selection: "
      "slot distance, for (k, d) outputs, the mean over slots of sum_j "
      "|y_rj - hard_rj|; mask distance, for every output, sum_j |m_j - "
      "hard mask_j| / k with m the output summed over slots (the mask-only "
      "peers' only distance). Mask-only peers get "
      "the per-slot cotangent through a fixed layout (each position in the "
      "slot it takes among the hard top-k in raster order). Bold: why a "
      "figure is missing.\n\n")
  text += common.markdown_table(
      ["setting", "peer", "fwd+bwd s", "x floor", "temp MB", "cosine",
       "norm ratio", "slot distance", "mask distance", "note"], table_rows)
  text += "\n\n" + "\n".join(
      f"- {_peer_summary(name, rows)}" for name, rows in results.items())
  return text


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
  if "peers" in _PARTS.value:
    print(f"Peers, forward + backward, S={NUM_SAMPLES}, sigma={SIGMA}:",
          flush=True)
    results = {name: benchmark_peers(SETTINGS[name], repeats=_REPEATS.value)
               for name in PEERS_SETTINGS}
    table = peers_table(results)
    print(table)
    print("wrote", common.write_results(
        "topk_peers", {"machine": common.machine_description(),
                       "num_samples": NUM_SAMPLES, "sigma": SIGMA,
                       "settings": {n: SETTINGS[n] for n in PEERS_SETTINGS},
                       "rows": results}, table))
  if "perturbed" not in _PARTS.value:
    return
  print("Perturbed Top-K, forward + backward, S=500, sigma=0.05:", flush=True)
  results = {"machine": common.machine_description(), "operator": {},
             "extractors": []}
  table_rows = []
  settings = TINY_SETTINGS if _TINY.value else SETTINGS
  for setting_name in settings:
    for score_kind in ("smooth",) if _TINY.value else ("smooth", "uniform"):
      rows = benchmark_operator(setting_name, score_kind, settings)
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
