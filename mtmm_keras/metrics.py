"""In-graph Keras metrics: in-batch Recall@K for cross-modal search (`compile(metrics=...)` of a joint-embedding
model). Whole-gallery numbers, their callback and the definitions (ties count against the query) are in
`mk.retrieval`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks


def _irrelevant_ahead(scores: Any, query_ids: Any, gallery_ids: Any) -> Any:
    """Per query row: #gallery items of another group scoring ≥ the best item of the query's group
    (rank of the first match − 1; ties count against the query, as in `mtmm_keras.retrieval`)."""
    relevant = ops.equal(ops.expand_dims(query_ids, 1), ops.expand_dims(gallery_ids, 0))
    best = ops.max(ops.where(relevant, scores, float("-inf")), axis=1, keepdims=True)
    ahead = ops.logical_and(ops.greater_equal(scores, best), ops.logical_not(relevant))
    return ops.sum(ops.cast(ahead, "int32"), axis=1)


@keras.saving.register_keras_serializable(package="mtmm")
class RecallAtK(keras.metrics.Mean):
    """In-batch Recall@K, averaged over batches.

    - With `query` and `gallery` (modality names) it reads a joint-embedding model's dict of
      embeddings: each row's `query` embedding searches the batch's `gallery` embeddings. Pass it to
      `compile(metrics=[...])` of a `JointEmbeddingModel`, one instance per direction. `y_true` holds
      group ids `[B]` (same-group items are matches; `None`: row i matches row i only).
    - Without them, `y_pred` is a `[B, B]` similarity matrix (diagonal = matches), `y_true` group ids.
    Ties count against the query. In-batch numbers depend on the batch size (the global batch under
    `tf.distribute`: each replica's queries search every replica's gallery rows); for the whole
    validation gallery use the `mk.retrieval.RetrievalEvaluation` callback. Default name:
    `in_batch_<query>_to_<gallery>_recall_at_<k>` (`in_batch_recall_at_<k>` without modality names).
    """

    def __init__(self, k: int = 1, query: str | None = None, gallery: str | None = None, name: str | None = None,
                 dtype: Any = None):
        self.k = _checks.positive_int(k, "k")
        if (query is None) != (gallery is None):
            raise ValueError(f"Pass both `query` and `gallery` (modality names), or neither; got query={query!r}, "
                             f"gallery={gallery!r}.")
        for value, arg in ((query, "query"), (gallery, "gallery")):
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"`{arg}` must be a modality name (a non-empty string), got {value!r}.")
        if query is not None and query == gallery:
            raise ValueError(f"`query` and `gallery` must be two different modalities, got {query!r} for both.")
        self.query, self.gallery = query, gallery
        # the one key order (mk.retrieval): <query>_to_<gallery>_recall_at_<k>, marked in-batch (its numbers change
        # with the batch size; RetrievalEvaluation logs the whole-set numbers under the same key without the mark)
        default = "in_batch_" + (f"{query}_to_{gallery}_" if query is not None else "") + f"recall_at_{self.k}"
        super().__init__(name=name or default, dtype=dtype)

    @property
    def reads_embeddings(self) -> bool:
        """True when it reads the model's dict of embeddings (what `JointEmbeddingModel.compile` looks for)."""
        return self.query is not None

    def _embeddings(self, y_pred: Any) -> tuple[Any, Any]:
        if not isinstance(y_pred, dict) or self.query not in y_pred or self.gallery not in y_pred:
            keys = list(y_pred) if isinstance(y_pred, dict) else type(y_pred).__name__
            raise ValueError(f"{self.name}: `query` {self.query!r} and `gallery` {self.gallery!r} must be keys of the "
                             f"model's output dict of embeddings; got {keys}.")
        queries, gallery = (ops.cast(y_pred[m], "float32") for m in (self.query, self.gallery))
        return (ops.reshape(queries, (ops.shape(queries)[0], -1)), ops.reshape(gallery, (ops.shape(gallery)[0], -1)))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add one batch: each query row searches the batch's gallery rows; `y_true` holds group ids (or None)."""
        if self.query is None:  # a [B, B] similarity matrix
            scores = ops.cast(ops.convert_to_tensor(y_pred), "float32")
            ids = ops.arange(ops.shape(scores)[0]) if y_true is None else ops.reshape(ops.convert_to_tensor(y_true), (-1,))
            query_ids = gallery_ids = ids
        else:
            from mtmm_keras.distribute import gather

            # Under tf.distribute each replica's queries search the global batch's gallery (like the loss's
            # negatives); the replicas' sums add up to the one-device number. Identity on one device and JAX.
            queries, gallery = self._embeddings(y_pred)
            local = ops.shape(queries)[0]
            gallery = gather.all_gather_rows(gallery)
            if y_true is None:  # row i matches row i: global row numbers
                query_ids = ops.add(ops.arange(local, dtype="int32"), ops.cast(gather.local_rows_start(queries), "int32"))
                gallery_ids = ops.arange(ops.shape(gallery)[0], dtype="int32")
            else:
                query_ids = ops.reshape(ops.convert_to_tensor(y_true), (-1,))
                gallery_ids = gather.all_gather_rows(query_ids)
            scores = ops.matmul(queries, ops.transpose(gallery))
        hits = ops.less(_irrelevant_ahead(scores, query_ids, gallery_ids), self.k)
        super().update_state(ops.cast(hits, "float32"), sample_weight=sample_weight)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        return {"k": self.k, "query": self.query, "gallery": self.gallery, "name": self.name, "dtype": self.dtype}


__all__ = ["RecallAtK"]
