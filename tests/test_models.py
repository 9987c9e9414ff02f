# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of PatchNet, the scorer, the selection helpers and create_model."""

import dataclasses
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from ptopk_patch_selection import models
from ptopk_patch_selection import patches as patches_lib
from ptopk_patch_selection import perturbed_topk as ptopk
from ptopk_patch_selection import score_function
from ptopk_patch_selection.models import aggregators
from ptopk_patch_selection.models import patchnet
from ptopk_patch_selection.models import selection

IMAGE = (48, 64)  # downscale 2 -> 24x32 -> a 2x3 grid, d = 6


# Cheap XLA compiles for tiny shapes (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compile")


def tiny_config(**overrides):
  config = default.get_config().model
  config.k = 2
  config.patch_size = 12
  config.downscale = 2
  config.perturbed.num_samples = 16
  config.sinkhorn.epsilon = 1e-2
  config.sinkhorn.num_iterations = 100
  config.transformer.update(num_layers=1, num_heads=2, hidden_size=8,
                            dropout=0.5)
  for field, value in overrides.items():
    node = config
    *parents, last = field.split(".")
    for parent in parents:
      node = node[parent]
    node[last] = value
  return config


def rngs(seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  return dict(zip(("params", "selection", "dropout"), keys))


def images(batch=2, size=IMAGE, channels=3, seed=0):
  return jax.random.uniform(jax.random.key(seed), (batch,) + size +
                            (channels,))


def init(model, x):
  return jax.jit(lambda x: model.init(rngs(), x, train=False))(x)


def test_scorer_grid_at_paper_sizes():
  assert models.Scorer.grid_size((960, 1280), 3) == (39, 52)
  assert models.Scorer.grid_size((1000, 1000), 4) == (30, 30)


@pytest.mark.parametrize("padding", ["valid", "edge"])
def test_scorer_output_matches_grid_size(padding):
  """Both paddings give the grid of the formula, here at traffic size."""
  scorer = models.Scorer(padding=padding, use_se=True)
  x = jnp.zeros((1, 960 // 3, 1280 // 3, 3))
  variables = jax.eval_shape(lambda x: scorer.init(jax.random.key(0), x), x)
  scores = jax.eval_shape(scorer.apply, variables, x)
  assert scores.shape == (1, 39, 52)


def test_scorer_valid_padding_is_a_plain_unpadded_cnn():
  """The cropped padded convolutions equal VALID ones with the same kernels."""
  x = images(2, (40, 56))
  scorer = models.Scorer(padding="valid")
  variables = scorer.init(jax.random.key(0), x)
  expected = x
  for i in range(4):
    conv = variables["params"][f"Conv_{i}"]
    expected = jax.lax.conv_general_dilated(
        expected, conv["kernel"], (1, 1), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv["bias"]
    if i < 3:
      expected = jax.nn.relu(expected)
  expected = nn.max_pool(expected, (8, 8), strides=(8, 8))[..., 0]
  np.testing.assert_allclose(scorer.apply(variables, x), expected,
                             rtol=1e-5, atol=1e-6)


def test_scorer_edge_padding_same_params_different_scores():
  x = images(1, (40, 56))
  valid = models.Scorer(padding="valid")
  variables = valid.init(jax.random.key(0), x)
  edge_scores = models.Scorer(padding="edge").apply(variables, x)
  valid_scores = valid.apply(variables, x)
  chex.assert_equal_shape([edge_scores, valid_scores])
  assert edge_scores.shape == (1, 4, 6)
  assert not np.allclose(edge_scores, valid_scores)


@pytest.mark.parametrize("field,value,message", [
    ("k", 7, "model.k=7"),
    ("patch_size", 49, "model.patch_size=49"),
    ("aggregator", "attention", "model.aggregator='attention'"),
    ("selection", "gumbel", "model.selection='gumbel'"),
    ("selection_eval", "soft", "model.selection_eval='soft'"),
    ("feature_network", "vgg", "model.feature_network='vgg'"),
    ("normalization", "zscore", "model.normalization='zscore'"),
    ("name", "vit", "model.name='vit'"),
    ("downscale", 4, "model.downscale=4"),
    ("transformer.num_heads", 3, "model.transformer.num_heads=3"),
    ("train_patches", "blend", "model.train_patches='blend'"),
    ("perturbed.loss_samples", 1, "model.perturbed.loss_samples=1"),
    ("resnet_stem", "tf", "model.resnet_stem='tf'"),
    ("sinkhorn.form", "unrolled", "model.sinkhorn.form='unrolled'"),
    ("perturbed.chunk_size", 0, "model.perturbed.chunk_size=0"),
    ("stem_gradient", "fast", "model.stem_gradient='fast'"),
])
def test_create_model_rejects_invalid_fields(field, value, message):
  config = tiny_config(**{"aggregator": "transformer",
                          "train_patches": "score_function", field: value})
  with pytest.raises(ValueError, match=re.escape(message)):
    models.create_model(config, num_classes=4, image_size=IMAGE)


def test_diagonal_gradient_with_an_ignored_variance_reduction_fails():
  """The released diagonal term cannot use a conditional or leave-one-out
  reduction: the error names both fields."""
  for reduction in ("conditional", "leave_one_out"):
    config = tiny_config(**{"perturbed.gradient": "diagonal",
                            "perturbed.variance_reduction": reduction})
    with pytest.raises(ValueError, match=(
        r"model.perturbed.gradient='diagonal' ignores "
        rf"model.perturbed.variance_reduction='{reduction}'")):
      models.create_model(config, num_classes=4, image_size=IMAGE)
    with pytest.raises(ValueError, match="gradient='diagonal' ignores"):
      ptopk.perturbed_topk(jnp.zeros((1, 6)), jax.random.key(0), k=2,
                           num_samples=4, sigma=0.5,
                           gradient="diagonal", variance_reduction=reduction)
  for reduction in ptopk.DIAGONAL_VARIANCE_REDUCTIONS:
    models.create_model(
        tiny_config(**{"perturbed.gradient": "diagonal",
                       "perturbed.variance_reduction": reduction}),
        num_classes=4, image_size=IMAGE)


@pytest.mark.parametrize("overrides,why", [
    (dict(selection="hard"), ""),
    (dict(train_patches="score_function"), "score-function training"),
])
def test_shared_noise_that_no_perturbed_topk_draws_fails(overrides, why):
  config = tiny_config(**{"perturbed.shared_noise": True}, **overrides)
  with pytest.raises(ValueError, match=(
      r"model.perturbed.shared_noise=True would be ignored.*" + why)):
    models.create_model(config, num_classes=4, image_size=IMAGE)
  config.selection_eval = "perturbed"  # now evaluation draws with it
  model = models.create_model(config, num_classes=4, image_size=IMAGE)
  # The model's Top-K hands the option to the operator: equal rows, equal
  # frequencies (one draw for the batch), which a draw per row would not give.
  row = jax.random.normal(jax.random.key(0), (1, 9))
  equal_rows = jnp.concatenate([row, row])
  for shared in (True, False):
    topk = dataclasses.replace(model.topk, shared_noise=shared)
    frequencies, _ = topk("perturbed", equal_rows, key=jax.random.key(1),
                          sigma=0.5)
    assert np.array_equal(frequencies[0], frequencies[1]) == shared


def test_create_model_accepts_largest_k_and_patch():
  model = models.create_model(tiny_config(k=6, patch_size=48), num_classes=4,
                              image_size=IMAGE)
  assert isinstance(model, models.PatchNet)
  assert (model.k, model.patch_size) == (6, 48)


@pytest.mark.parametrize("name,cls", [
    ("patchnet", models.PatchNet),
    ("whole_image", models.WholeImageClassifier),
    ("ntsnet", models.NTSNet),
])
def test_create_model_builds_each_model(name, cls):
  config = tiny_config(name=name, feature_network="resnet18_thin")
  assert isinstance(
      models.create_model(config, num_classes=4, image_size=(448, 448)), cls)


def _scorer_gradient(method, **overrides):
  """Gradient of the cross entropy (not the entropy term) w.r.t. the scorer."""
  model = models.create_model(tiny_config(selection=method, **overrides),
                              num_classes=4, image_size=IMAGE)
  x = images()
  variables = init(model, x)
  labels = jnp.array([0, 3])

  @jax.jit
  def grad(params):
    def loss(params):
      (logits, _), _ = model.apply(
          {**variables, "params": params}, x, train=True, sigma=0.5,
          rngs=rngs(1), mutable=["batch_stats"])
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels])
    return jax.grad(loss)(params)

  return grad(variables["params"])["scorer"]


@pytest.mark.parametrize("method", ["perturbed", "sinkhorn"])
def test_gradient_reaches_scorer_with_soft_selection(method):
  gradient = _scorer_gradient(method)
  leaves = jax.tree.leaves(gradient)
  assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
  assert sum(float(jnp.abs(leaf).sum()) for leaf in leaves) > 0


def test_gradient_is_zero_for_scorer_with_hard_selection():
  for leaf in jax.tree.leaves(_scorer_gradient("hard")):
    np.testing.assert_array_equal(leaf, 0.0)


def test_random_patches_are_random_at_evaluation_with_no_scorer():
  """selection="random": no scorer, random patches in evaluation too."""
  with pytest.raises(ValueError, match="model.selection_eval='random'"):
    models.create_model(tiny_config(selection="random"), num_classes=4,
                        image_size=IMAGE)
  model = models.create_model(
      tiny_config(selection="random", selection_eval="random"),
      num_classes=4, image_size=IMAGE)
  x = images(batch=16)
  variables = init(model, x)
  assert "scorer" not in variables["params"]
  evaluate = jax.jit(lambda r: model.apply(variables, x, train=False,
                                           rngs=r)[1].indices)
  first = np.asarray(evaluate(rngs(1)))
  np.testing.assert_array_equal(first, evaluate(rngs(1)))  # repeatable
  assert not np.array_equal(first, evaluate(rngs(2)))
  # Not one fixed top-k: the 16 images get different pairs of patches.
  assert len({tuple(row) for row in first}) > 3


def test_read_is_the_models_own_reader():
  """PatchNet.read on the hard top-k gives PatchNet's evaluation logits."""
  model = models.create_model(tiny_config(), num_classes=4, image_size=IMAGE)
  x = images()
  variables = init(model, x)
  logits, aux = model.apply(variables, x, train=False)
  read_logits, indicators, patches = model.apply(
      variables, x, train=False, indices=aux.indices,
      method=patchnet.PatchNet.read)
  np.testing.assert_allclose(read_logits, logits, atol=1e-6)
  np.testing.assert_array_equal(indicators, aux.indicators)
  np.testing.assert_array_equal(patches, aux.patches)


def test_scorer_patch_grid_centres_patches_on_the_score_cells():
  """patch_grid="scorer": patch (i, j) centred on (c(i+1), c(j+1))."""
  released = models.create_model(tiny_config(), num_classes=4,
                                 image_size=IMAGE)
  aligned = models.create_model(tiny_config(patch_grid="scorer"),
                                num_classes=4, image_size=IMAGE)
  grid = aligned.candidate_grid(IMAGE)
  c = models.Scorer.cell_stride(2)
  assert c == 16 and grid.stride == (16, 16)
  top, left = grid.corners(jnp.arange(6))
  np.testing.assert_array_equal(top + 6, [16, 16, 16, 32, 32, 32])
  np.testing.assert_array_equal(left + 6, [16, 32, 48] * 2)
  assert released.candidate_grid(IMAGE).stride == (24, 21)
  x = images()
  variables = init(released, x)  # same parameters
  _, aux = released.apply(variables, x, train=False)
  _, aligned_aux = aligned.apply(variables, x, train=False)
  np.testing.assert_array_equal(aux.indices, aligned_aux.indices)
  assert not np.allclose(aux.patches, aligned_aux.patches)
  with pytest.raises(ValueError, match="model.patch_grid='centred'"):
    models.create_model(tiny_config(patch_grid="centred"), num_classes=4,
                        image_size=IMAGE)


@pytest.mark.parametrize("aggregator", ["mean", "transformer"])
def test_evaluation_is_deterministic(aggregator):
  """Eval: no RNG needed, same logits twice; training differs by RNG."""
  model = models.create_model(tiny_config(aggregator=aggregator),
                              num_classes=4, image_size=IMAGE)
  x = images()
  variables = init(model, x)
  evaluate = jax.jit(lambda v, r: model.apply(v, x, train=False, sigma=0.5,
                                              rngs=r)[0])
  first = evaluate(variables, {})
  np.testing.assert_array_equal(first, evaluate(variables, {}))
  np.testing.assert_array_equal(first, evaluate(variables, rngs(7)))

  train = jax.jit(lambda r: model.apply(
      variables, x, train=True, sigma=0.5, rngs=r,
      mutable=["batch_stats"])[0][0])
  assert not np.allclose(train(rngs(1)), train(rngs(2)))


def _trace(config, image_size, batch=2):
  model = models.create_model(config, num_classes=9, image_size=image_size)
  x = jax.ShapeDtypeStruct((batch,) + image_size + (3,), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(rngs(), x, train=False), x)
  outputs = {}
  for train in (True, False):
    (logits, aux), _ = jax.eval_shape(
        lambda v, x, t=train: model.apply(v, x, train=t, sigma=0.05,
                                          rngs=rngs(), mutable=True),
        variables, x)
    outputs[train] = (logits, aux)
  return outputs


def test_traffic_sign_setting_traces():
  config = default.get_config().model  # The defaults are the traffic setup.
  outputs = _trace(config, (960, 1280))
  for logits, aux in outputs.values():
    assert logits.shape == (2, 9)
    assert aux.scores.shape == (2, 39, 52)
    assert aux.indicators.shape == (2, 5, 2028)
    assert aux.indices.shape == (2, 5)
    assert aux.patches.shape == (2, 5, 100, 100, 3)


def test_billiard_setting_traces():
  config = tiny_config(k=10, patch_size=100, downscale=4,
                       feature_network="resnet18", aggregator="transformer")
  config.transformer.update(num_layers=3, num_heads=8, hidden_size=256)
  outputs = _trace(config, (1000, 1000))
  for logits, aux in outputs.values():
    assert logits.shape == (2, 9)
    assert aux.scores.shape == (2, 30, 30)
    assert aux.indicators.shape == (2, 10, 900)
    assert aux.patches.shape == (2, 10, 100, 100, 3)


def test_tiny_forward_backward_with_all_options():
  config = tiny_config(aggregator="transformer", append_position=True,
                       scorer_has_se=True, scorer_padding="edge",
                       patch_padding="edge", hard_topk_probability=0.5,
                       random_patch_probability=0.5)
  model = models.create_model(config, num_classes=4, image_size=IMAGE)
  x = images()
  variables = init(model, x)

  @jax.jit
  def step(params):
    def loss(params):
      (logits, aux), state = model.apply(
          {**variables, "params": params}, x, train=True, sigma=0.1,
          rngs=rngs(3), mutable=["batch_stats"])
      return logits.sum() - aux.entropy, (aux, state)
    return jax.grad(loss, has_aux=True)(params)

  grads, (aux, state) = step(variables["params"])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["feature_network"]["stem_conv"]["kernel"]).sum())
  # The stem sees 5 channels (image + position); the summary keeps 3.
  assert grads["feature_network"]["stem_conv"]["kernel"].shape[2] == 5
  chex.assert_shape(aux.patches, (2, 2, 12, 12, 3))
  chex.assert_shape(aux.indicators, (2, 2, 6))
  np.testing.assert_allclose(aux.indicators.sum(-1), 1.0, rtol=1e-5)
  new_mean = state["batch_stats"]["feature_network"]["final_bn"]["mean"]
  old_mean = variables["batch_stats"]["feature_network"]["final_bn"]["mean"]
  assert not np.allclose(new_mean, old_mean)


def test_soft_extractors_give_the_same_logits():
  x = images()
  logits = []
  for extractor in ("matmul", "scan"):
    model = models.create_model(tiny_config(soft_extractor=extractor),
                                num_classes=4, image_size=IMAGE)
    variables = init(model, x)
    logits.append(jax.jit(lambda v, m=model: m.apply(
        v, x, train=True, sigma=0.3, rngs=rngs(2),
        mutable=["batch_stats"])[0][0])(variables))
  np.testing.assert_allclose(logits[0], logits[1], rtol=1e-4, atol=1e-5)


def test_whole_image_classifier_downscales():
  config = tiny_config(name="whole_image", whole_image_downscale=2)
  model = models.create_model(config, num_classes=5, image_size=IMAGE)
  x = images()
  variables = init(model, x)
  logits, aux = model.apply(variables, x, train=False)
  chex.assert_shape(logits, (2, 5))
  assert float(aux.entropy) == 0.0
  # Same logits as the network on the image resized by hand.
  small = jax.image.resize(x, (2, 24, 32, 3), "bilinear", antialias=True)
  unscaled = models.WholeImageClassifier(5, model.feature_network)
  np.testing.assert_allclose(unscaled.apply(variables, small, train=False)[0],
                             logits, rtol=1e-5, atol=1e-6)


def test_whole_image_linear_head_is_one_dense_on_the_features():
  """whole_image_head="linear" (released): logits = features @ W + b."""
  x = images()
  mlp = models.create_model(tiny_config(name="whole_image"), num_classes=4,
                            image_size=IMAGE)
  linear = models.create_model(
      tiny_config(name="whole_image", whole_image_head="linear"),
      num_classes=4, image_size=IMAGE)
  variables = init(linear, x)
  assert set(variables["params"]["head"]) == {"logits"}
  assert set(init(mlp, x)["params"]["head"]) == {"hidden", "logits"}
  logits, _ = linear.apply(variables, x, train=False)
  features = linear.feature_network.apply(
      {name: tree["feature_network"] for name, tree in variables.items()},
      x, train=False)
  dense = variables["params"]["head"]["logits"]
  np.testing.assert_allclose(logits, features @ dense["kernel"] +
                             dense["bias"], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="model.whole_image_head='deep'"):
    models.create_model(tiny_config(name="whole_image",
                                    whole_image_head="deep"),
                        num_classes=4, image_size=IMAGE)


def test_position_channels():
  out = patchnet.append_position_channels(jnp.zeros((1, 3, 5, 2)))
  chex.assert_shape(out, (1, 3, 5, 4))
  np.testing.assert_allclose(out[0, :, 0, 2], [0.0, 0.5, 1.0])
  np.testing.assert_allclose(out[0, 0, :, 3], [0.0, 0.25, 0.5, 0.75, 1.0])


def test_normalizations_and_entropy():
  scores = jnp.array([[1.0, 3.0, 2.0], [0.0, 0.0, 0.0]])
  minmax = selection.normalize_scores(scores, "minmax", 1e-5)
  np.testing.assert_allclose(minmax[0], [0.0, 1 / (1 + 5e-6), 0.5 / (1 + 5e-6)],
                             rtol=1e-6)
  np.testing.assert_array_equal(minmax[1], 0.0)
  np.testing.assert_allclose(
      selection.normalize_scores(scores, "softmax").sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(
      selection.normalize_scores(scores, "identity"), scores)
  p = jax.nn.softmax(scores[0])
  expected = (-(p * jnp.log(p)).sum() + jnp.log(3.0)) / 2
  np.testing.assert_allclose(selection.softmax_entropy(scores), expected,
                             rtol=1e-6)


def test_random_indices_are_distinct_and_sorted():
  indices = selection.random_indices(jax.random.key(0), 64, 10, 4)
  assert indices.shape == (64, 4)
  assert np.all(np.diff(np.asarray(indices), axis=1) > 0)
  assert len(np.unique(np.asarray(indices))) == 10  # Every patch is drawn.


@pytest.mark.parametrize("soft", [False, True])
def test_random_patches_never_duplicate_the_selection(soft):
  scores = jax.random.normal(jax.random.key(1), (32, 10))
  hard = selection.TopK(k=3)("hard", scores, key=None, sigma=0.0)[1]
  indicators = jax.nn.one_hot(hard, 10) if soft else None
  indices = None if soft else hard
  new_indicators, new_indices = selection.mix_in_random_patches(
      jax.random.key(2), indicators, indices, scores, probability=1.0)
  if soft:
    assert new_indices is None
    new_indices = jnp.argmax(new_indicators, -1)
  for old, new in zip(np.asarray(hard), np.asarray(new_indices)):
    assert len(set(new)) == 3 and not set(old) & set(new)


def test_patch_dropout_drops_candidates_in_training_only():
  """Inverted dropout of the candidates: a sampled patch is 0 or 2x clean."""
  def model(rate, **overrides):
    return models.create_model(
        tiny_config(patch_dropout=rate, **overrides), num_classes=4,
        image_size=IMAGE)

  x = images(batch=4)
  variables = init(model(0.0), x)  # dropout has no parameters
  selection_key = jax.random.key(1)

  def train_patches(network, dropout_seed):
    (_, aux), _ = network.apply(
        variables, x, train=True, sigma=0.5, mutable=["batch_stats"],
        rngs={"selection": selection_key,
              "dropout": jax.random.key(dropout_seed)})
    return aux

  for train_patches_mode in ("soft", "sampled"):
    clean = train_patches(model(0.0, train_patches=train_patches_mode), 0)
    dropped = model(0.5, train_patches=train_patches_mode)
    first, again = train_patches(dropped, 0), train_patches(dropped, 0)
    np.testing.assert_array_equal(first.patches, again.patches)
    assert not np.allclose(first.patches, clean.patches)
    assert not np.allclose(first.patches, train_patches(dropped, 1).patches)
    np.testing.assert_array_equal(first.indicators, clean.indicators)
  grid = patches_lib.PatchGrid(IMAGE, (2, 3), 12)
  sampled = np.asarray(patches_lib.extract_patches_from_indices(
      x, first.indices, grid))
  ratio = [np.unique(np.round(d[s > 0] / s[s > 0], 4))
           for d, s in zip(np.asarray(first.patches).reshape(8, -1),
                           sampled.reshape(8, -1))]
  assert all(r.tolist() in ([0.0], [2.0]) for r in ratio)
  assert {r[0] for r in ratio} == {0.0, 2.0}

  for selection_eval in ("hard", "perturbed"):
    outputs = [network.apply(variables, x, train=False, sigma=0.5,
                             rngs=rngs(1))
               for network in (model(0.0, selection_eval=selection_eval),
                               model(0.5, selection_eval=selection_eval))]
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    np.testing.assert_array_equal(outputs[0][1].patches,
                                  outputs[1][1].patches)


@pytest.mark.parametrize("overrides,other", [
    ({"selection": "hard"}, "model.selection='hard'"),
    ({"selection": "random", "selection_eval": "random"},
     "model.selection='random'"),
    ({"train_patches": "score_function"},
     "model.train_patches='score_function'"),
    ({"name": "whole_image"}, "model.name='whole_image'"),
    ({"name": "ntsnet", "feature_network": "resnet18_thin"},
     "model.name='ntsnet'"),
])
def test_patch_dropout_that_would_be_ignored_fails(overrides, other):
  config = tiny_config(patch_dropout=0.5, **overrides)
  with pytest.raises(ValueError, match=(re.escape("model.patch_dropout=0.5")
                                        + ".*" + re.escape(other))):
    models.create_model(config, num_classes=4, image_size=(64, 64))
  with pytest.raises(ValueError, match=re.escape("model.patch_dropout=1.0")):
    models.create_model(tiny_config(patch_dropout=1.0), num_classes=4,
                        image_size=IMAGE)


def test_hard_topk_probability_one_gives_hard_indicators():
  scores = jax.random.normal(jax.random.key(1), (4, 10))
  soft = jnp.full((4, 3, 10), 0.1)
  mixed = selection.mix_in_hard_topk(jax.random.key(0), soft, scores, 1.0)
  expected = jax.nn.one_hot(jnp.sort(jax.lax.top_k(scores, 3)[1]), 10)
  np.testing.assert_array_equal(mixed, expected)
  np.testing.assert_array_equal(
      selection.mix_in_hard_topk(jax.random.key(0), soft, scores, 0.0), soft)


def test_sampled_training_patches_are_clean_with_a_scorer_gradient():
  """train_patches="sampled": one sample's hard patches, perturbed gradient."""
  model = models.create_model(
      tiny_config(selection="perturbed", train_patches="sampled"),
      num_classes=4, image_size=IMAGE)
  x = images()
  variables = init(model, x)
  (_, aux), _ = model.apply(variables, x, train=True, sigma=0.5,
                            rngs=rngs(1), mutable=["batch_stats"])
  indicators = np.asarray(aux.indicators)
  np.testing.assert_allclose(indicators.max(-1), 1.0, atol=1e-6)  # one-hot
  np.testing.assert_allclose(indicators.sum(-1), 1.0, atol=1e-5)
  grid = patches_lib.PatchGrid(IMAGE, (2, 3), 12)
  np.testing.assert_allclose(
      aux.patches, patches_lib.extract_patches_from_indices(
          x, aux.indices, grid), atol=1e-5)

  gradient = jax.tree.leaves(_scorer_gradient("perturbed",
                                              train_patches="sampled"))
  assert sum(float(jnp.abs(leaf).sum()) for leaf in gradient) > 0


def test_score_function_training_uses_several_clean_selections():
  """train_patches="score_function": m hard selections per example."""
  model = models.create_model(
      tiny_config(selection="perturbed", train_patches="score_function",
                  **{"perturbed.loss_samples": 3}),
      num_classes=4, image_size=IMAGE)
  x = images()
  variables = init(model, x)
  labels = jnp.array([0, 3])

  def apply(params):
    return model.apply({**variables, "params": params}, x, train=True,
                       sigma=0.5, rngs=rngs(1), mutable=["batch_stats"])[0]

  logits, aux = apply(variables["params"])
  assert logits.shape == (2, 3, 4)
  assert aux.indices.shape == (2, 3, 2)
  assert aux.selection_noise.shape == (2, 3, 6)
  grid = patches_lib.PatchGrid(IMAGE, (2, 3), 12)
  np.testing.assert_allclose(
      aux.patches[:, 1], patches_lib.extract_patches_from_indices(
          x, aux.indices[:, 1], grid), atol=1e-6)
  expected = ptopk.topk_indices(
      aux.normalized_scores.reshape(2, 1, 6) + 0.5 * aux.selection_noise,
      2)
  np.testing.assert_array_equal(aux.indices, expected)
  eval_logits, _ = model.apply(variables, x, train=False)
  assert eval_logits.shape == (2, 4)

  def scorer_gradient(with_surrogate):
    def loss(params):
      logits, aux = apply(params)
      losses = -jax.nn.log_softmax(logits)[
          jnp.arange(2)[:, None], jnp.arange(3), labels[:, None]]
      surrogate = score_function.expected_loss_surrogate(
          aux.normalized_scores.reshape(2, -1), aux.selection_noise,
          losses, 0.5)
      return losses.mean() + (surrogate if with_surrogate else 0.0)
    return jax.tree.leaves(jax.grad(loss)(variables["params"])["scorer"])

  for leaf in scorer_gradient(False):  # hard patches: no path to the scorer
    np.testing.assert_array_equal(leaf, 0.0)
  leaves = scorer_gradient(True)
  assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
  assert sum(float(jnp.abs(leaf).sum()) for leaf in leaves) > 0


@pytest.mark.parametrize("train_patches", ["sampled", "score_function"])
def test_training_selections_draw_the_configured_noise(monkeypatch,
                                                      train_patches):
  """perturbed.noise reaches the clean training selections too."""
  kinds = []

  def spy(key, scores, k, sigma, kind, num_samples=None):
    kinds.append(kind)
    return sample(key, scores, k, sigma, kind, num_samples)

  sample = score_function.sample_perturbed_indices
  monkeypatch.setattr(score_function, "sample_perturbed_indices", spy)
  model = models.create_model(
      tiny_config(selection="perturbed", train_patches=train_patches,
                  **{"perturbed.noise": "gumbel"}),
      num_classes=4, image_size=IMAGE)
  x = images()
  model.apply(init(model, x), x, train=True, sigma=0.5, rngs=rngs(1),
              mutable=["batch_stats"])
  assert kinds == ["gumbel"]


def _patchnet(**fields):
  """A PatchNet built directly, as a user lifting it into a model would."""
  built = models.create_model(tiny_config(), num_classes=4, image_size=IMAGE)
  return built.clone(**fields)


@pytest.mark.parametrize("fields,message", [
    (dict(patch_grid="scorr"), "patch_grid='scorr'"),
    (dict(train_patches="blend"), "train_patches='blend'"),
    (dict(soft_extractor="gather"), "soft_extractor='gather'"),
    (dict(patch_padding="wrap"), "patch_padding='wrap'"),
    (dict(selection="gumbel"), "selection='gumbel'"),
    (dict(normalization="zscore"), "normalization='zscore'"),
    (dict(train_patches="sampled", selection="hard"),
     "train_patches='sampled' acts on a perturbed selection"),
    (dict(selection="random"), "selection_eval='hard' would evaluate"),
    (dict(patch_dropout=1.0), "patch_dropout=1.0"),
    (dict(patch_dropout=0.5, selection="hard", selection_eval="hard"),
     "patch_dropout=0.5 would be ignored with selection='hard'"),
    (dict(train_patches="score_function", hard_topk_probability=0.5),
     "must be 0 with train_patches='score_function'"),
    (dict(train_patches="score_function", loss_samples=1),
     "loss_samples=1 must be >= 2"),
])
def test_a_directly_built_patchnet_checks_its_own_fields(fields, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    _patchnet(**fields)


def test_the_scorer_and_transformer_check_their_fields_when_built():
  """Before any call: a model built directly fails where it is defined."""
  with pytest.raises(ValueError, match=re.escape("padding='same'")):
    models.Scorer(padding="same")
  with pytest.raises(ValueError, match=re.escape(
      "num_heads=3 must divide hidden_size=16")):
    aggregators.TransformerAggregator(num_heads=3, hidden_size=16)


@pytest.mark.parametrize("fields,message", [
    (dict(chunk_size=0), "chunk_size=0"),
    (dict(num_samples=499), "num_samples=499 has no divisor"),
    (dict(variance_reduction="antithetic", noise="gumbel"), "antithetic"),
    (dict(sinkhorn_form="unrolled"), "sinkhorn_form='unrolled'"),
    (dict(k=0), "k=0"),
])
def test_topk_checks_its_own_options(fields, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    selection.TopK(**({"k": 2} | fields))


def test_an_ignored_train_patches_is_refused_from_the_config():
  config = tiny_config(train_patches="sampled", selection="hard")
  with pytest.raises(ValueError, match=re.escape(
      "model.train_patches='sampled' acts on a perturbed selection; with "
      "model.selection='hard' it would be ignored")):
    models.create_model(config, num_classes=4, image_size=IMAGE)
