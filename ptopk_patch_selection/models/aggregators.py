# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Aggregators: patch embeddings (b, k, D) -> one representation per image.

Every aggregator is called as `aggregator(embeddings, indicators, train=...)`
where indicators (b, k, d) are the slots' (soft or one-hot) distributions over
the d candidate patches; only the transformer reads them.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

POOLINGS = ("sum", "mean", "max", "cls")


class MeanAggregator(nn.Module):
  """Mean over the k patches (ATS, traffic signs)."""

  @nn.compact
  def __call__(self, embeddings, indicators, *, train: bool) -> jax.Array:
    del indicators, train
    return embeddings.mean(axis=1)


class MaxAggregator(nn.Module):
  """Element-wise max over the k patches."""

  @nn.compact
  def __call__(self, embeddings, indicators, *, train: bool) -> jax.Array:
    del indicators, train
    return embeddings.max(axis=1)


class SumLayerNormAggregator(nn.Module):
  """Sum over the k patches, then LayerNorm."""

  @nn.compact
  def __call__(self, embeddings, indicators, *, train: bool) -> jax.Array:
    del indicators, train
    return nn.LayerNorm()(embeddings.sum(axis=1))


class TransformerLayer(nn.Module):
  """Post-LN encoder layer.

  x = LN(x + drop(MHA(x))); x = LN(x + drop(FFN(x))), FFN = Dense(2 H) ->
  ReLU -> Dense(H), LayerNorm epsilon 1e-6.
  """
  num_heads: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    hidden = x.shape[-1]
    y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads,
                                        qkv_features=hidden)(x, x)
    y = nn.Dropout(self.dropout)(y, deterministic=not train)
    x = nn.LayerNorm(epsilon=1e-6)(x + y)
    y = nn.Dense(hidden)(nn.relu(nn.Dense(2 * hidden)(x)))
    y = nn.Dropout(self.dropout)(y, deterministic=not train)
    return nn.LayerNorm(epsilon=1e-6)(x + y)


def transformer_layers(x: jax.Array, *, num_layers: int, num_heads: int,
                       dropout: float, train: bool) -> jax.Array:
  """num_layers `TransformerLayer`s on tokens (b, n, H) -> (b, n, H).

  Call it inside a compact method: the layers are that module's submodules
  "layer1", "layer2", ..., each with its own parameters.
  """
  for layer in range(num_layers):
    x = TransformerLayer(num_heads, dropout,
                         name=f"layer{layer + 1}")(x, train=train)
  return x


class TransformerAggregator(nn.Module):
  """Self-attention over the k patch embeddings (billiard).

  A learned linear position encoding, Dense(D) of each slot's indicator row
  over the grid, is added to the embeddings (b, k, D); they are projected to
  hidden_size if D differs, go through num_layers post-LN layers and are
  pooled. Dropout (from the "dropout" RNG stream) only in training.

  Attributes:
    num_layers: number of encoder layers.
    num_heads: attention heads; hidden_size must be a multiple of it.
    hidden_size: width of the layers.
    dropout: dropout rate after attention and after the feed-forward block.
    pooling: "sum", "mean", "max" over the slots, or "cls" (a learned token).
  """
  num_layers: int = 3
  num_heads: int = 8
  hidden_size: int = 256
  dropout: float = 0.1
  pooling: str = "sum"

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r} is not one of {POOLINGS}.")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"num_heads={self.num_heads} must divide "
                       f"hidden_size={self.hidden_size}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, embeddings: jax.Array, indicators: jax.Array, *,
               train: bool) -> jax.Array:
    x = embeddings + nn.Dense(embeddings.shape[-1], name="position_encoding")(
        indicators.astype(embeddings.dtype))
    if x.shape[-1] != self.hidden_size:
      x = nn.Dense(self.hidden_size, name="projection")(x)
    if self.pooling == "cls":
      cls = self.param("cls", nn.initializers.normal(1.0 / self.hidden_size),
                       (1, 1, self.hidden_size))
      x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0],) + cls.shape[1:]),
                           x], axis=1)
    x = transformer_layers(x, num_layers=self.num_layers,
                           num_heads=self.num_heads, dropout=self.dropout,
                           train=train)
    if self.pooling == "cls":
      return x[:, 0]
    return {"sum": jnp.sum, "mean": jnp.mean, "max": jnp.max}[self.pooling](
        x, axis=1)


AGGREGATORS = ("mean", "max", "sum_layernorm", "transformer")


def aggregator(name: str, **transformer_kwargs) -> nn.Module:
  """A fresh aggregator by name; transformer_kwargs go to the transformer."""
  if name == "transformer":
    return TransformerAggregator(**transformer_kwargs)
  simple = {"mean": MeanAggregator, "max": MaxAggregator,
            "sum_layernorm": SumLayerNormAggregator}
  if name not in simple:
    raise ValueError(f"Unknown aggregator {name!r}; expected one of "
                     f"{AGGREGATORS}.")
  return simple[name]()
