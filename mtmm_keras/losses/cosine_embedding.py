"""Cosine embedding loss with PyTorch's semantics: 1 − cos for y = 1, max(0, cos − margin) for y = −1."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops



def pair_cosine(pairs: Any, epsilon: float = 1e-8) -> Any:
    """Cosine similarity of the two embeddings in each `[B, 2, D]` pair."""
    a, b = pairs[:, 0, :], pairs[:, 1, :]
    dot = ops.sum(a * b, axis=-1)
    norms = ops.sqrt(ops.sum(a * a, axis=-1) * ops.sum(b * b, axis=-1))
    return dot / ops.maximum(norms, epsilon)


def cosine_embedding(labels: Any, cosine: Any, margin: float = 0.0) -> Any:
    """Per-pair loss: 1 − cos where label is 1, max(0, cos − margin) where label is −1.

    Exactly PyTorch's `CosineEmbeddingLoss`: any other label (0 included) contributes 0 — it is *not*
    a negative. 0/1 labels must be converted (`2 * y - 1`); the models' `fit` refuses them up front.
    """
    cosine = ops.reshape(cosine, (-1,))
    labels = ops.cast(ops.reshape(labels, (-1,)), cosine.dtype)
    zeros = ops.zeros_like(cosine)
    positive = ops.where(ops.equal(labels, 1.0), 1.0 - cosine, zeros)
    negative = ops.where(ops.equal(labels, -1.0), ops.relu(cosine - margin), zeros)
    return positive + negative


@keras.saving.register_keras_serializable(package="mtmm")
class CosineEmbeddingLoss(keras.losses.Loss):
    """`torch.nn.CosineEmbeddingLoss` for Keras: `y_true` ∈ {1, −1}; `y_pred` is either the pairs'
    cosine similarities `[B]` or the pairs themselves stacked as `[B, 2, D]`.

    Labels follow PyTorch: 1 = matching pair, −1 = non-matching pair. A label of 0 (or anything else)
    adds nothing to the sum but still counts in the mean, as in PyTorch; it is never read as −1.
    `JointEmbeddingModel.fit`/`evaluate` refuse labels other than ±1 with an error suggesting `2 * y - 1`.

    The joint-embedding builder uses it in *pair mode*: each batch row is a (modality A, modality B)
    pair with a ±1 label, instead of in-batch negatives.
    """

    pairwise = True  # tells JointEmbeddingModel to feed row-aligned pairs, not a similarity matrix

    def __init__(
        self,
        margin: float = 0.0,
        reduction: str = "sum_over_batch_size",
        name: str = "cosine_embedding_loss",
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not -1.0 <= margin <= 1.0:
            raise ValueError(f"`margin` must be a number in [-1, 1] (a cosine), got {margin!r}.")
        self.margin = float(margin)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Run `CosineEmbeddingLoss` on its inputs (the computation is described in the class docstring)."""
        cosine = pair_cosine(y_pred) if len(y_pred.shape) == 3 else y_pred
        return cosine_embedding(y_true, cosine, self.margin)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(margin=self.margin)
        return config


