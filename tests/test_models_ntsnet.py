# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of NTS-Net with differentiable Top-K (CUB-200)."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from ptopk_patch_selection import models
from ptopk_patch_selection.models import ntsnet


# Cheap XLA compiles for tiny shapes (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compile")


def nts_config(**overrides):
  config = default.get_config().model
  config.update(name="ntsnet", feature_network="resnet50", k=4)
  config.update(**overrides)
  return config


def rngs(seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  return dict(zip(("params", "selection", "dropout"), keys))


def test_anchors_at_448():
  assert ntsnet.num_anchors((448, 448)) == 1614
  assert ntsnet.ANCHOR_LEVELS[0].shapes == ((74, 49), (60, 60), (49, 74),
                                            (93, 62), (76, 76), (62, 93))
  assert ntsnet.ANCHOR_LEVELS[2].shapes[-1] == (248, 373)


def test_weighted_anchor_crops_match_slices():
  """One-hot weights give the zero-padded crop; weights act linearly."""
  image = jax.random.uniform(jax.random.key(0), (1, 20, 24, 2))
  stride, shape = 8, (12, 6)  # pad = (ceil(4 / 2), ceil(-2 / 2)) = (2, -1)
  weights = jnp.zeros((1, 2, 3, 3)).at[0, 0, 2, 1].set(1.0)
  weights = weights.at[0, 1, 0, 0].set(0.25).at[0, 1, 1, 2].set(0.75)
  crops = ntsnet.weighted_anchor_crops(image, weights, stride, shape)
  chex.assert_shape(crops, (1, 2, 12, 6, 2))
  padded = np.pad(np.asarray(image[0]), ((2, 20), (0, 20), (0, 0)))

  def crop(i, j):  # Top-left (i * 8 - 2, j * 8 + 1) in image coordinates.
    return padded[i * 8:i * 8 + 12, j * 8 + 1:j * 8 + 7]

  np.testing.assert_allclose(crops[0, 0], crop(2, 1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(crops[0, 1], 0.25 * crop(0, 0) +
                             0.75 * crop(1, 2), rtol=1e-5, atol=1e-6)


def test_448_setting_traces():
  model = models.create_model(nts_config(), num_classes=200,
                              image_size=(448, 448))
  x = jax.ShapeDtypeStruct((2, 448, 448, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(rngs(), x, train=False), x)
  assert "backbone" in variables["params"]
  for train in (True, False):
    (logits, aux), _ = jax.eval_shape(
        lambda v, x, t=train: model.apply(v, x, train=t, sigma=0.05,
                                          rngs=rngs(), mutable=True),
        variables, x)
    assert logits.shape == (2, 200)
    assert aux.raw_logits.shape == (2, 200)
    assert aux.part_logits.shape == (2, 4, 200)
    assert aux.scores.shape == (2, 1614)
    assert aux.indicators.shape == (2, 4, 1614)
    assert aux.parts.shape == (2, 4, 224, 224, 3)


def test_create_ntsnet_validates():
  with pytest.raises(ValueError,
                     match=re.escape("model.feature_network='ats_traffic'")):
    models.create_model(nts_config(feature_network="ats_traffic"),
                        num_classes=200, image_size=(448, 448))
  with pytest.raises(ValueError, match=re.escape("model.k=1615")):
    models.create_model(nts_config(k=1615), num_classes=200,
                        image_size=(448, 448))
  config = nts_config()
  config.ntsnet.communication = "attention"
  with pytest.raises(ValueError,
                     match=re.escape("model.ntsnet.communication=")):
    models.create_model(config, num_classes=200, image_size=(448, 448))


def test_transformer_communication_mixes_all_levels():
  """Position parameter (1, n, 128), 2 layers of 8 heads, split back."""
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 16))  # 4x4, 2x2, 1x1
  outputs = {}
  for communication in ("none", "squeeze_excite_d", "transformer"):
    network = ntsnet.ProposalNetwork(communication)
    variables = network.init(jax.random.key(1), x, train=False)
    outputs[communication] = network.apply(variables, x, train=False)
  params = variables["params"]
  chex.assert_shape(params["position"], (1, 16 + 4 + 1, 128))
  assert sorted(name for name in params if name.startswith("layer")) == [
      "layer1", "layer2"]
  chex.assert_shape(
      params["layer1"]["MultiHeadDotProductAttention_0"]["query"]["kernel"],
      (128, 8, 16))
  for output in outputs.values():
    chex.assert_shape(output, (2, 16 * 6 + 4 * 6 + 9))
  # Same convolutions (same names and init key): only the mixing differs.
  assert not np.allclose(outputs["transformer"], outputs["none"])
  assert not np.allclose(outputs["transformer"], outputs["squeeze_excite_d"])
  # Evaluation needs no dropout RNG; training draws dropout.
  np.testing.assert_array_equal(
      network.apply(variables, x, train=False), outputs["transformer"])
  trained = [network.apply(variables, x, train=True,
                           rngs={"dropout": jax.random.key(seed)})
             for seed in (0, 1)]
  assert not np.allclose(trained[0], trained[1])
  at_448 = jax.eval_shape(lambda x: network.init(jax.random.key(1), x,
                                                 train=False),
                          jax.ShapeDtypeStruct((1, 14, 14, 8), jnp.float32))
  assert at_448["params"]["position"].shape == (1, 261, 128)


def tiny_config(**ntsnet_overrides):
  """4-channel 64x64 images (39 anchors), 16x16 parts, thin ResNet-18."""
  config = nts_config(feature_network="resnet18_thin", k=2)
  config.perturbed.num_samples = 16
  config.ntsnet.update(part_size=16, **ntsnet_overrides)
  return config


@pytest.mark.parametrize("communication", ntsnet.COMMUNICATIONS)
@pytest.mark.parametrize("aggregation", ntsnet.NTS_AGGREGATIONS)
def test_variants_trace(communication, aggregation):
  config = tiny_config(communication=communication, aggregation=aggregation)
  model = models.create_model(config, num_classes=5, image_size=(64, 64))
  x = jax.ShapeDtypeStruct((2, 64, 64, 4), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(rngs(), x, train=False), x)
  has_se = "SqueezeExcite_0" in variables["params"]["proposal"]
  assert has_se == communication.startswith("squeeze_excite")
  concat_inputs = variables["params"]["concat_head"]["kernel"].shape[0]
  assert concat_inputs == (128 if aggregation == "mean" else 3 * 128)
  (logits, aux), _ = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, sigma=0.5, rngs=rngs(),
                               mutable=True), variables, x)
  assert logits.shape == (2, 5) and aux.parts.shape == (2, 2, 16, 16, 4)


def test_tiny_forward_backward():
  config = tiny_config()
  model = models.create_model(config, num_classes=5, image_size=(64, 64))
  x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 4))
  labels = jnp.array([1, 4])
  variables = jax.jit(lambda x: model.init(rngs(), x, train=False))(x)

  @jax.jit
  def step(params):
    def loss(params):
      (logits, aux), _ = model.apply({**variables, "params": params}, x,
                                     train=True, sigma=0.5, rngs=rngs(1),
                                     mutable=["batch_stats"])
      return models.ntsnet_losses(logits, aux, labels)["loss"], aux
    return jax.grad(loss, has_aux=True)(params)

  grads, aux = step(variables["params"])
  chex.assert_shape(aux.parts, (2, 2, 16, 16, 4))
  chex.assert_shape(aux.indicators, (2, 2, 39))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  proposal = sum(float(jnp.abs(g).sum())
                 for g in jax.tree.leaves(grads["proposal"]))
  assert proposal > 0  # The Top-K gradient trains the proposal network.

  evaluate = jax.jit(lambda v: model.apply(v, x, train=False))
  first, aux = evaluate(variables)
  np.testing.assert_array_equal(first, evaluate(variables)[0])
  np.testing.assert_array_equal(aux.indicators.sum(-1), 1.0)
  np.testing.assert_array_equal(aux.indicators.max(-1), 1.0)  # Hard.


def test_ntsnet_losses():
  logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
  unread = ("scores", "normalized_scores", "entropy", "sigma", "indicators",
            "indices", "parts")
  aux = ntsnet.NTSNetOutput(
      raw_logits=jnp.zeros((2, 2)),
      part_logits=jnp.stack([logits, -logits], axis=1),
      **dict.fromkeys(unread, None))
  labels = jnp.array([0, 1])
  losses = models.ntsnet_losses(logits, aux, labels)
  concat = -jax.nn.log_softmax(logits)[jnp.arange(2), labels]
  flipped = -jax.nn.log_softmax(-logits)[jnp.arange(2), labels]
  np.testing.assert_allclose(losses["loss_raw"], jnp.log(2.0), rtol=1e-6)
  np.testing.assert_allclose(losses["loss_concat"], concat.mean(), rtol=1e-6)
  np.testing.assert_allclose(losses["loss_part"],
                             (concat + flipped).mean() / 2, rtol=1e-6)
  np.testing.assert_allclose(
      losses["loss"], losses["loss_raw"] + losses["loss_concat"] +
      losses["loss_part"], rtol=1e-6)
  masked = models.ntsnet_losses(logits, aux, labels, mask=jnp.array([1., 0.]))
  np.testing.assert_allclose(masked["loss_concat"], concat[0], rtol=1e-6)


@pytest.mark.parametrize("fields,message", [
    (dict(communication="attention"), "communication='attention'"),
    (dict(aggregation="sum"), "aggregation='sum'"),
    (dict(selection_eval="soft"), "selection_eval='soft'"),
])
def test_a_directly_built_ntsnet_checks_its_own_fields(fields, message):
  model = models.create_model(tiny_config(), num_classes=5,
                              image_size=(64, 64))
  with pytest.raises(ValueError, match=re.escape(message)):
    model.clone(**fields)
