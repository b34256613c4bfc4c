"""Symmetric InfoNCE (CLIP-style) contrastive loss on an in-batch similarity matrix."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks

from mtmm_keras.losses._similarity import check_square, negative_mask


def contrastive(group_ids: Any, similarity: Any, temperature: float = 0.07, bidirectional: bool = True) -> Any:
    """Per-anchor cross-entropy of picking the diagonal among the row's (and column's) candidates.

    Off-diagonal items of the anchor's own group are left out of the softmax (they are not negatives).
    """
    similarity = ops.convert_to_tensor(similarity)  # NumPy in: `array - tensor` fails on torch
    check_square(similarity, "ContrastiveLoss")
    logits = similarity / temperature
    eye = ops.eye(ops.shape(similarity)[0], dtype=similarity.dtype)
    keep = negative_mask(similarity, group_ids) + eye
    masked = ops.where(keep > 0, logits, ops.full_like(logits, -1e9))
    positives = ops.diagonal(logits)
    loss = ops.logsumexp(masked, axis=1) - positives
    if bidirectional:
        loss = 0.5 * (loss + ops.logsumexp(masked, axis=0) - positives)
    return loss


@keras.saving.register_keras_serializable(package="mtmm")
class ContrastiveLoss(keras.losses.Loss):
    """InfoNCE with a fixed temperature; `y_pred` is a `[B, B]` similarity matrix, `y_true` group ids."""

    def __init__(
        self,
        temperature: float = 0.07,
        bidirectional: bool = True,
        reduction: str = "sum_over_batch_size",
        name: str = "contrastive_loss",
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = _checks.positive_float(temperature, "temperature")
        self.bidirectional = bool(bidirectional)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Run `ContrastiveLoss` on its inputs (the computation is described in the class docstring)."""
        return contrastive(y_true, y_pred, self.temperature, self.bidirectional)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(temperature=self.temperature, bidirectional=self.bidirectional)
        return config
