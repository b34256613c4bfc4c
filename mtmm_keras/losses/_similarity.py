"""Helpers shared by the similarity-matrix losses: which pairs are positive and which are negative."""

from __future__ import annotations

from typing import Any

from keras import ops


def negative_mask(similarity: Any, group_ids: Any = None) -> Any:
    """1.0 where column k is a negative for row i: k ≠ i, and (with group ids) a different group."""
    batch = ops.shape(similarity)[0]
    if group_ids is None:
        return 1.0 - ops.eye(batch, dtype=similarity.dtype)
    ids = ops.reshape(group_ids, (-1,))
    return ops.cast(ops.not_equal(ops.expand_dims(ids, 1), ops.expand_dims(ids, 0)), similarity.dtype)


def check_square(similarity: Any, loss_name: str) -> None:
    shape = tuple(similarity.shape)
    if len(shape) != 2 or (None not in shape and shape[0] != shape[1]):
        raise ValueError(
            f"{loss_name} expects y_pred to be a square [batch, batch] similarity matrix "
            f"(queries × candidates, positives on the diagonal); got shape {shape}."
        )
