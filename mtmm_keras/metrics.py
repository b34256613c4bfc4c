"""Retrieval metrics: Recall@K for cross-modal search, as a Keras metric and as a NumPy function."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from mtmm_keras import _checks


def retrieval_recall(
    queries: Any,
    gallery: Any,
    ks: Sequence[int] = (1, 5),
    query_ids: Any = None,
    gallery_ids: Any = None,
) -> dict[str, float]:
    """Fraction of queries whose match is among the top-K gallery items by inner product.

    Without ids, query i matches gallery item i; with ids, any gallery item with the query's id matches.
    """
    queries, gallery = np.asarray(queries, np.float32), np.asarray(gallery, np.float32)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"`queries` and `gallery` must be [n, d] with one d; got {queries.shape} and {gallery.shape}.")
    if query_ids is None:
        if len(queries) != len(gallery):
            raise ValueError("Without ids, `queries` and `gallery` must be row-aligned (same length).")
        query_ids = gallery_ids = np.arange(len(queries))
    query_ids, gallery_ids = np.asarray(query_ids), np.asarray(gallery_ids)
    order = np.argsort(-(queries @ gallery.T), axis=1)
    hits = gallery_ids[order] == query_ids[:, None]
    return {f"recall@{k}": float(hits[:, : _checks.positive_int(k, "ks")].any(axis=1).mean()) for k in ks}


@keras.saving.register_keras_serializable(package="mtmm")
class RecallAtK(keras.metrics.Mean):
    """In-batch Recall@K on a `[B, B]` similarity matrix (diagonal = matches), averaged over batches.

    `y_true` holds group ids `[B]`: a candidate in the query's group counts as a hit.
    """

    def __init__(self, k: int = 1, name: str | None = None, dtype: Any = None):
        self.k = _checks.positive_int(k, "k")
        super().__init__(name=name or f"recall_at_{self.k}", dtype=dtype)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ids = ops.reshape(ops.convert_to_tensor(y_true), (-1,))
        k = min(self.k, int(y_pred.shape[1])) if y_pred.shape[1] is not None else self.k
        _, top = ops.top_k(y_pred, k=k)
        hits = ops.any(ops.equal(ops.take(ids, top), ops.expand_dims(ids, 1)), axis=1)
        super().update_state(ops.cast(hits, "float32"), sample_weight=sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k, "name": self.name, "dtype": self.dtype}


__all__ = ["RecallAtK", "retrieval_recall"]
