"""Retrieval metrics for cross-modal search: in-batch Recall@K as a Keras metric (usable in
`compile(metrics=...)` of a joint-embedding model), a callback that measures the full validation
gallery at each epoch end, and NumPy functions (blocked over queries; see `mtmm_keras.retrieval` for
the definitions and the tie rule: ties count against the query)."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from mtmm_keras import _checks, retrieval
from mtmm_keras.retrieval import cross_modal_metrics, first_match_ranks, retrieval_metrics


def retrieval_recall(
    queries: Any,
    gallery: Any,
    ks: Sequence[int] = (1, 5),
    query_ids: Any = None,
    gallery_ids: Any = None,
    block_size: int = retrieval.DEFAULT_BLOCK_SIZE,
) -> dict[str, float]:
    """Fraction of queries whose match is among the top-K gallery items by inner product (`recall@K`).

    Without ids, query i matches gallery item i; with ids, any gallery item with the query's id matches.
    Computed in blocks of `block_size` queries (`mtmm_keras.retrieval.retrieval_metrics`).
    """
    result = retrieval_metrics(queries, gallery, query_ids, gallery_ids, ks=ks, block_size=block_size,
                               mean_average_precision=False)
    return {key: value for key, value in result.items() if key.startswith("recall@")}


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
    validation gallery use the `RetrievalEvaluation` callback.
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
        default = f"recall_at_{self.k}" + (f"_{query}_to_{gallery}" if query is not None else "")
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
        return {"k": self.k, "query": self.query, "gallery": self.gallery, "name": self.name, "dtype": self.dtype}


class RetrievalEvaluation(keras.callbacks.Callback):
    """At each epoch end, embed `x` with the model and search the whole set in every direction between
    modalities (blocked, `mtmm_keras.retrieval.cross_modal_metrics`); logs
    `<prefix><a>_to_<b>_recall_at_<K>`, `..._median_rank` and `..._map` into the epoch logs (so
    `history.history` and later callbacks such as EarlyStopping see them).

    `x`: the model's inputs (dict by modality); `y`: group ids, one per row (`None`: row i matches row i).
    """

    def __init__(self, x: Any, y: Any = None, ks: Sequence[int] = (1, 5), block_size: int = retrieval.DEFAULT_BLOCK_SIZE,
                 batch_size: int = 256, mean_average_precision: bool = True, prefix: str = "val_"):
        super().__init__()
        self.ks = tuple(_checks.positive_int(k, "ks") for k in ks)
        self.block_size = _checks.positive_int(block_size, "block_size")
        self.batch_size = _checks.positive_int(batch_size, "batch_size")
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string, got {type(prefix).__name__}.")
        self.x, self.y, self.prefix, self.mean_average_precision = x, y, prefix, bool(mean_average_precision)
        self.last: dict[str, float] = {}

    def evaluate(self) -> dict[str, float]:
        """The metrics now, without the prefix."""
        embeddings = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        if not isinstance(embeddings, dict):
            raise TypeError("RetrievalEvaluation needs a model whose outputs are a dict of embeddings by modality "
                            f"(a joint-embedding model); got {type(embeddings).__name__}.")
        groups = None if self.y is None else np.asarray(self.y).reshape(-1)
        return cross_modal_metrics({m: np.asarray(e) for m, e in embeddings.items()}, groups, ks=self.ks,
                                   block_size=self.block_size, mean_average_precision=self.mean_average_precision)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.last = self.evaluate()
        if logs is not None:
            logs.update({self.prefix + key: value for key, value in self.last.items()})


__all__ = [
    "RecallAtK",
    "RetrievalEvaluation",
    "cross_modal_metrics",
    "first_match_ranks",
    "retrieval_metrics",
    "retrieval_recall",
]
