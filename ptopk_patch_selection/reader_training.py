# Copyright 2026 The ptopk_patch_selection Authors.
# Licensed under the Apache License, Version 2.0.
"""Supervised training of a patch reader alone: a PatchClassifier and AdamW.

PatchNet's training loop is train.py; this one trains the reader on labelled
patches, for tools/pretrain_reader.py (a pretrained reader for the embedded
default).

  training = ReaderTraining(patch_classifier.create("resnet18_thin", 8),
                            learning_rate=1e-3, weight_decay=1e-4, seed=0,
                            example_patches=patches[:2])
  loss = training.step(patches, labels)        # float32 (n, p, p, 3), (n,)
  accuracy = training.accuracy(test_patches, test_labels)
"""

import flax.linen as nn
import jax
import numpy as np
import optax


def to_float(patches: np.ndarray) -> np.ndarray:
  """uint8 pixels -> float32 in [0, 1], the input pipeline's range."""
  return patches.astype(np.float32) / 255.0


class ReaderTraining:
  """The classifier's variables and AdamW state, updated by `step`.

  Attributes:
    variables: {"params": ..., "batch_stats": ...} of the classifier.
  """

  def __init__(self, classifier: nn.Module, *, learning_rate: float,
               weight_decay: float, seed: int, example_patches: np.ndarray):
    self.classifier = classifier
    self.variables = classifier.init(jax.random.key(seed), example_patches,
                                     train=False)
    self._optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)
    self._opt_state = self._optimizer.init(self.variables["params"])
    self._step = jax.jit(self._train_step)
    self._predict = jax.jit(self._predictions,
                            static_argnames="batch_statistics")

  def _train_step(self, variables, opt_state, patches, labels):
    def loss_fn(params):
      logits, updates = self.classifier.apply(
          {**variables, "params": params}, patches, train=True,
          mutable=["batch_stats"])
      return self.classifier.loss(logits, labels), updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        variables["params"])
    changes, opt_state = self._optimizer.update(grads, opt_state,
                                                variables["params"])
    params = optax.apply_updates(variables["params"], changes)
    return {**variables, **updates, "params": params}, opt_state, loss

  def _predictions(self, variables, patches, batch_statistics):
    if batch_statistics:  # normalise with this batch's statistics
      logits, _ = self.classifier.apply(variables, patches, train=True,
                                        mutable=["batch_stats"])
    else:
      logits = self.classifier.apply(variables, patches, train=False)
    return logits.argmax(-1)

  def step(self, patches: np.ndarray, labels: np.ndarray) -> float:
    """One AdamW step on float32 patches (n, p, p, 3), labels (n,); the loss."""
    self.variables, self._opt_state, loss = self._step(
        self.variables, self._opt_state, patches, labels)
    return float(loss)

  def predict(self, patches: np.ndarray, *, batch_statistics: bool = False,
              batch_size: int = 100) -> np.ndarray:
    """Predicted labels (n,). BatchNorm uses its running averages, or with
    `batch_statistics` each batch's own statistics (the running averages lag
    behind a reader that learns fast)."""
    return np.concatenate([
        np.asarray(self._predict(self.variables, patches[i:i + batch_size],
                                 batch_statistics=batch_statistics))
        for i in range(0, len(patches), batch_size)])

  def accuracy(self, patches: np.ndarray, labels: np.ndarray,
               **kwargs) -> float:
    """Fraction of `patches` whose prediction is the label (kwargs: predict)."""
    return float(np.mean(self.predict(patches, **kwargs) == labels))
