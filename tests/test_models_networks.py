# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Tests of the feature networks, aggregators and pretrained loading."""

import math
import os
import pathlib
import pickle
import re
import zipfile

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import default
from ptopk_patch_selection import errors
from ptopk_patch_selection import models
from ptopk_patch_selection.models import aggregators
from ptopk_patch_selection.models import feature_networks
from ptopk_patch_selection.models import pretrained


# Cheap XLA compiles for tiny shapes (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compile")


def num_params(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def abstract_init(module, shape):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(
      lambda x: module.init(jax.random.key(0), x, train=False), x)


# Parameters without a classifier: torchvision's ResNet-18 (11,689,512) and
# ResNet-50 (25,557,032) less their 1000-way heads.
@pytest.mark.parametrize("name,params,features,map_shape", [
    ("ats_traffic", 59_680, 32, (13, 13, 32)),
    ("resnet18", 11_176_512, 512, (4, 4, 512)),
    ("resnet18_thin", 702_096, 128, (4, 4, 128)),
    ("resnet50", 23_508_032, 2048, (4, 4, 2048)),
])
def test_feature_network_shapes_and_sizes(name, params, features, map_shape):
  network = feature_networks.feature_network(name)
  variables = abstract_init(network, (2, 100, 100, 3))
  assert num_params(variables["params"]) == params
  x = jax.ShapeDtypeStruct((2, 100, 100, 3), jnp.float32)
  pooled = jax.eval_shape(
      lambda v, x: network.apply(v, x, train=False), variables, x)
  assert pooled.shape == (2, features)
  feature_map = jax.eval_shape(
      lambda v, x: network.apply(v, x, train=False, pool=False), variables, x)
  assert feature_map.shape == (2,) + map_shape


def test_unknown_feature_network():
  with pytest.raises(ValueError, match="vgg"):
    feature_networks.feature_network("vgg")


@pytest.mark.parametrize("name", sorted(feature_networks.FEATURE_NETWORKS))
def test_feature_network_made_inside_a_compact_method(name):
  """The benchmarks' readers build the network inline: it must bind there."""

  class Reader(nn.Module):

    @nn.compact
    def __call__(self, x):
      return feature_networks.feature_network(name, "released")(
          x, train=False)

  variables = Reader().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert len(variables["params"]) == 1


def test_resnet_stem_has_relu():
  """With no stages the output is the pooled stem: ReLU makes it >= 0."""
  stem = feature_networks.ResNet((), feature_networks.BasicBlock, 8)
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = stem.init(jax.random.key(1), x, train=False)
  out = stem.apply(variables, x, train=False, pool=False)
  chex.assert_shape(out, (2, 4, 4, 8))
  assert float(out.min()) >= 0.0 and float(out.max()) > 0.0


def test_released_resnet_stem_has_tf_same_padding_momentum_099_no_relu():
  """stem="released": conv padded (2, 3), BN momentum 0.99, no ReLU, pool
  padded (0, 1): the released stem, computed here by hand."""
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  ours = feature_networks.ResNet((), feature_networks.BasicBlock, 8)
  released = ours.clone(stem="released")
  variables = ours.init(jax.random.key(1), x, train=False)
  kernel = variables["params"]["stem_conv"]["kernel"]
  conv = jax.lax.conv_general_dilated(
      x, kernel, (2, 2), ((2, 3), (2, 3)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  expected = jax.lax.reduce_window(
      conv / jnp.sqrt(1 + 1e-5), -jnp.inf, jax.lax.max, (1, 3, 3, 1),
      (1, 2, 2, 1), ((0, 0), (0, 1), (0, 1), (0, 0)))
  out = released.apply(variables, x, train=False, pool=False)
  chex.assert_shape(out, (2, 4, 4, 8))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  assert float(out.min()) < 0.0  # no ReLU
  assert not np.allclose(out, ours.apply(variables, x, train=False,
                                         pool=False), atol=1e-3)
  _, state = released.apply(variables, x, train=True, pool=False,
                            mutable=["batch_stats"])
  np.testing.assert_allclose(state["batch_stats"]["stem_bn"]["mean"],
                             0.01 * conv.mean(axis=(0, 1, 2)), rtol=1e-4,
                             atol=1e-7)
  # The same parameters: released (or converted) weights load as they are.
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, released.init(jax.random.key(1), x, train=False))
  assert feature_networks.feature_network(
      "resnet50", resnet_stem="released").stem == "released"


def test_bottleneck_last_batchnorm_starts_at_zero():
  block = feature_networks.BottleneckBlock(4, strides=2)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
  variables = block.init(jax.random.key(1), x, train=False)
  np.testing.assert_array_equal(variables["params"]["bn3"]["scale"], 0.0)
  assert float(jnp.abs(variables["params"]["bn2"]["scale"]).min()) == 1.0
  # The block starts as relu(projection(x)); v1.5: the 3x3 is strided.
  assert variables["params"]["conv2"]["kernel"].shape == (3, 3, 4, 4)
  chex.assert_shape(block.apply(variables, x, train=False), (2, 4, 4, 16))


def test_preact_block_shortcut_takes_the_activated_input():
  """Residual branch zeroed: out = relu(BN(x)), not x (ATS)."""
  block = feature_networks.PreActBasicBlock(4)
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
  variables = block.init(jax.random.key(1), x, train=False)
  params = jax.tree.map(lambda a: a, variables["params"])
  params["conv2"]["kernel"] = jnp.zeros_like(params["conv2"]["kernel"])
  out = block.apply({**variables, "params": params}, x, train=False)
  np.testing.assert_allclose(out, jax.nn.relu(x / jnp.sqrt(1 + 1e-5)),
                             rtol=1e-5, atol=1e-6)


def test_batchnorm_momentum():
  network = feature_networks.ATSNetwork(filters=4)
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  variables = network.init(jax.random.key(1), x, train=False)
  _, state = network.apply(variables, x, train=True, mutable=["batch_stats"])
  conv = variables["params"]["stem_conv"]["kernel"]
  stem = jax.lax.conv_general_dilated(x, conv, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO",
                                                         "NHWC"))
  np.testing.assert_allclose(state["batch_stats"]["block1"]["bn1"]["mean"],
                             0.1 * stem.mean(axis=(0, 1, 2)), rtol=1e-4,
                             atol=1e-6)


EMBEDDINGS = jax.random.normal(jax.random.key(0), (2, 3, 4))


@pytest.mark.parametrize("name,expected", [
    ("mean", EMBEDDINGS.mean(1)),
    ("max", EMBEDDINGS.max(1)),
    ("sum_layernorm", nn.LayerNorm().apply(
        {"params": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}},
        EMBEDDINGS.sum(1))),
])
def test_simple_aggregators(name, expected):
  aggregator = aggregators.aggregator(name)
  indicators = jnp.zeros((2, 3, 5))
  variables = aggregator.init(jax.random.key(0), EMBEDDINGS, indicators,
                              train=False)
  np.testing.assert_allclose(
      aggregator.apply(variables, EMBEDDINGS, indicators, train=False),
      expected, rtol=1e-5, atol=1e-6)


def _transformer(pooling, dropout=0.0):
  return aggregators.TransformerAggregator(num_layers=2, num_heads=2,
                                           hidden_size=8, dropout=dropout,
                                           pooling=pooling)


@pytest.mark.parametrize("pooling", aggregators.POOLINGS)
def test_transformer_pooling_and_position_encoding(pooling):
  aggregator = _transformer(pooling)
  indicators = jax.nn.one_hot(jnp.array([[0, 2, 4], [1, 2, 3]]), 5)
  variables = aggregator.init(jax.random.key(0), EMBEDDINGS, indicators,
                              train=False)
  out = aggregator.apply(variables, EMBEDDINGS, indicators, train=False)
  chex.assert_shape(out, (2, 8))
  assert "projection" in variables["params"]  # 4 -> 8
  moved = aggregator.apply(variables, EMBEDDINGS, indicators[:, :, ::-1],
                           train=False)
  assert not np.allclose(out, moved)  # The positions matter.
  if pooling != "cls":  # Permuting the slots jointly changes nothing.
    order = jnp.array([2, 0, 1])
    permuted = aggregator.apply(variables, EMBEDDINGS[:, order],
                                indicators[:, order], train=False)
    np.testing.assert_allclose(out, permuted, rtol=1e-4, atol=1e-5)


def test_transformer_dropout_only_in_training():
  aggregator = _transformer("sum", dropout=0.5)
  indicators = jnp.zeros((2, 3, 5))
  variables = aggregator.init(jax.random.key(0), EMBEDDINGS, indicators,
                              train=False)
  apply = lambda train, seed: aggregator.apply(
      variables, EMBEDDINGS, indicators, train=train,
      rngs={"dropout": jax.random.key(seed)})
  np.testing.assert_array_equal(apply(False, 1), apply(False, 2))
  assert not np.allclose(apply(True, 1), apply(True, 2))


def _resnet50_model_and_checkpoint(rng):
  """A WholeImage ResNet-50 (zeros) and a random bare ResNet-50 checkpoint."""
  config = default.get_config().model
  config.update(name="whole_image", feature_network="resnet50")
  model = models.create_model(config, num_classes=3, image_size=(64, 64))
  variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                           abstract_init(model, (1, 64, 64, 3)))
  network = jax.tree.map(
      lambda s: rng.normal(size=s.shape).astype(s.dtype),
      abstract_init(feature_networks.feature_network("resnet50"),
                    (1, 64, 64, 3)))
  return config, variables, network


def test_pretrained_npz_round_trip(tmp_path):
  config, variables, network = _resnet50_model_and_checkpoint(
      np.random.default_rng(0))
  flat = pretrained.flatten(network)
  flat["params/head/kernel"] = np.ones((2048, 1000), np.float32)  # Ignored.
  path = str(tmp_path / "resnet50.npz")
  np.savez(path, **flat)
  config.pretrained_checkpoint = path
  loaded = models.load_pretrained_feature_network(variables, config)
  chex.assert_trees_all_equal(
      {c: loaded[c]["feature_network"] for c in network}, network)
  chex.assert_trees_all_equal(loaded["params"]["head"],
                              variables["params"]["head"])


def test_a_colour_reader_loads_into_a_grey_model_with_the_same_outputs(
    tmp_path):
  """A reader pretrained on RGB, loaded into a one-channel model (its stem
  kernel summed over colours), gives on a grey image what the RGB reader
  gives on that image repeated in 3 channels."""
  network = feature_networks.feature_network("resnet18_thin")
  rgb = network.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                     train=False)
  rgb = jax.tree.map(  # non-trivial BatchNorm statistics
      lambda x: x + 0.1 * jax.random.normal(jax.random.key(1), x.shape), rgb)
  path = str(tmp_path / "rgb.npz")
  pretrained.save_npz(path, rgb)
  grey_init = {"params": {"reader": network.init(
      jax.random.key(2), jnp.zeros((1, 32, 32, 1)), train=False)["params"]},
               "batch_stats": {"reader": rgb["batch_stats"]}}
  loaded = pretrained.load_pretrained(grey_init, path, submodule="reader")
  grey_kernel = loaded["params"]["reader"]["stem_conv"]["kernel"]
  assert grey_kernel.shape[2] == 1
  image = jax.random.uniform(jax.random.key(3), (2, 32, 32, 1))
  grey_out = network.apply({c: v["reader"] for c, v in loaded.items()},
                           image, train=False)
  rgb_out = network.apply(rgb, jnp.repeat(image, 3, axis=-1), train=False)
  np.testing.assert_allclose(grey_out, rgb_out, rtol=1e-4, atol=1e-4)
  assert float(jnp.abs(rgb_out).max()) > 0.1


def test_pretrained_mismatch_names_the_variables(tmp_path):
  _, variables, network = _resnet50_model_and_checkpoint(
      np.random.default_rng(0))
  flat = pretrained.flatten(network)
  del flat["params/stage4_block3/conv3/kernel"]
  flat["batch_stats/stem_bn/mean"] = np.zeros(32, np.float32)
  path = str(tmp_path / "bad.npz")
  np.savez(path, **flat)
  with pytest.raises(ValueError) as error:
    pretrained.load_pretrained(variables, path, submodule="feature_network")
  message = str(error.value)
  assert "params/stage4_block3/conv3/kernel" in message
  assert re.search(r"batch_stats/stem_bn/mean: checkpoint \(32,\) vs model "
                   r"\(64,\)", message)
  with pytest.raises(ValueError, match="'backbone'"):
    pretrained.load_pretrained(variables, path, submodule="backbone")


def test_pretrained_prefix_mismatch_shows_names_of_both(tmp_path):
  _, variables, network = _resnet50_model_and_checkpoint(
      np.random.default_rng(0))
  path = str(tmp_path / "whole_model.npz")
  pretrained.save_npz(path, {"params": {"feature_network": network["params"]},
                             "batch_stats": network["batch_stats"]})
  with pytest.raises(errors.BadFileError) as error:
    pretrained.load_pretrained(variables, path, submodule="feature_network")
  lines = str(error.value).splitlines()
  assert path in lines[0] and len(lines) <= 5
  missing, unused = lines[1], lines[2]
  assert "the model's names missing from the file" in missing
  assert "params/stage1_block1/bn1/bias" in missing
  assert "the file's names the model lacks" in unused
  assert "params/feature_network/stage1_block1/bn1/bias" in unused
  assert "more)" in missing and "more)" in unused  # a few, not all


class _Unpickled:
  """Touches a file when unpickled: proof that something was."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _weights_file(path, kind, marker):
  arrays = {"params/conv/kernel": np.zeros((30, 30), np.float32)}
  if kind == "pickled entry":
    np.savez(path, **arrays, evil=np.array([_Unpickled(marker)], object))
  elif kind == "pickle":
    with open(path, "wb") as f:
      pickle.dump({"arrays": arrays, "evil": _Unpickled(marker)}, f)
  elif kind == "foreign zip":
    with zipfile.ZipFile(path, "w") as z:
      z.writestr("picture.png", b"\x89PNG not an array")
  else:
    pretrained.save_npz(path, arrays)
    if kind == "truncated":
      os.truncate(path, os.path.getsize(path) // 2)
    else:  # a damaged byte inside the array's data
      with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\x01")


@pytest.mark.parametrize("kind, reason", [
    ("pickled entry", "'evil' holds pickled Python objects"),
    ("pickle", "not a zip archive"),
    ("truncated", "not a zip archive"),
    ("foreign zip", "'picture.png' is not a .npy array"),
    ("damaged entry", "'params/conv/kernel' is truncated or damaged"),
])
def test_bad_weights_file_is_refused_naming_it(tmp_path, kind, reason):
  path = str(tmp_path / "weights.npz")
  marker = tmp_path / "unpickled"
  _weights_file(path, kind, marker)
  with pytest.raises(errors.BadFileError) as error:
    pretrained.read_checkpoint(path)
  message = str(error.value)
  assert message.startswith(f"{path} is not a weights file") and reason in (
      message)
  assert "model.pretrained_checkpoint should name a .npz file" in message
  assert not marker.exists()


def test_missing_weights_file_names_the_config_field(tmp_path):
  path = str(tmp_path / "nowhere.npz")
  with pytest.raises(errors.MissingFileError,
                     match="model.pretrained_checkpoint") as error:
    pretrained.read_checkpoint(path)
  assert path in str(error.value)


def test_pretrained_orbax_round_trip(tmp_path):
  network = feature_networks.feature_network("ats_traffic")
  x = jnp.zeros((1, 16, 16, 3))
  source = network.init(jax.random.key(3), x, train=False)
  path = tmp_path / "ats"
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, source)
  checkpointer.wait_until_finished()
  config = default.get_config().model
  model = models.create_model(config, num_classes=4, image_size=(960, 1280))
  target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        abstract_init(model, (1, 960, 1280, 3)))
  loaded = pretrained.load_pretrained(target, str(path),
                                      submodule="feature_network")
  chex.assert_trees_all_close(
      {c: loaded[c]["feature_network"] for c in source}, source)
  assert float(jnp.abs(loaded["params"]["scorer"]["Conv_0"]["kernel"]).sum(
      )) == 0.0


def test_pretrained_prefix_loads_one_subtree_of_a_checkpoint(tmp_path):
  """model.pretrained_prefix: the feature network of a whole model's .npz."""
  def zeros(n):
    return np.zeros(n, np.float32)
  variables = {"params": {"feature_network": {"conv": {"kernel": zeros(3)}},
                          "head": {"kernel": zeros(2)}},
               "batch_stats": {"feature_network": {"bn": {"mean": zeros(4)}}}}
  path = str(tmp_path / "patchnet.npz")
  pretrained.save_npz(path, {
      "params": {"feature_network": {"conv": {"kernel": np.full(3, 1.0)}},
                 "scorer": {"conv": {"kernel": np.full(3, 2.0)}},
                 "head": {"kernel": np.full(2, 3.0)}},
      "batch_stats": {"feature_network": {"bn": {"mean": np.full(4, 4.0)}}}})
  loaded = pretrained.load_pretrained(variables, path,
                                      submodule="feature_network",
                                      prefix="feature_network")
  np.testing.assert_array_equal(
      loaded["params"]["feature_network"]["conv"]["kernel"], 1.0)
  np.testing.assert_array_equal(
      loaded["batch_stats"]["feature_network"]["bn"]["mean"], 4.0)
  np.testing.assert_array_equal(loaded["params"]["head"]["kernel"], 0.0)
  with pytest.raises(errors.BadFileError, match="under prefix 'scorer'"):
    pretrained.load_pretrained(variables, path, submodule="feature_network",
                               prefix="scorer")  # no batch_stats there
  with pytest.raises(errors.ConfigError) as error:
    pretrained.load_pretrained(variables, path, submodule="feature_network",
                               prefix="backbone")
  message = str(error.value)
  assert "model.pretrained_prefix='backbone'" in message
  assert os.path.abspath(path) in message
  assert "feature_network, head, scorer" in message
  assert default.get_config().model.pretrained_prefix == ""
  # Through the factory, as training loads it.
  model_config = default.get_config().model
  model_config.unlock().update(pretrained_checkpoint=path,
                               pretrained_prefix="feature_network")
  through_config = models.load_pretrained_feature_network(variables,
                                                          model_config)
  np.testing.assert_array_equal(
      through_config["params"]["feature_network"]["conv"]["kernel"], 1.0)
