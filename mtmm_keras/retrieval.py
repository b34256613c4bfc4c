"""Full-gallery retrieval metrics in NumPy: Recall@K, median rank and mean average precision (mAP), and the
`RetrievalEvaluation` callback that logs them each epoch. (The in-batch Keras metric is `mk.metrics.RecallAtK`.)

Keys, everywhere (these functions, the callback, `RecallAtK`, `mtmm zoo evaluate` and the zoo's cards):
`<query>_to_<gallery>_recall_at_<K>`, `<query>_to_<gallery>_median_rank`, `<query>_to_<gallery>_map`; one
direction without modality names: `recall_at_<K>`, `median_rank`, `map`.

The query × gallery score matrix is never formed whole: queries go through in blocks of `block_size`
rows, so evaluating a 50k gallery needs memory for `block_size × n` scores, not `n × n`.

Definitions (the same in every function here and in the in-batch Keras metric `RecallAtK`):
- score s(q, g) = ⟨q, g⟩ (float32 inner product; cosine for L2-normalised embeddings);
- the items relevant to a query are the gallery items with the query's id (without ids, query i and
  gallery item i are the only match);
- **ties count against the query**: a gallery item that is not relevant and scores *equal to* a relevant
  one is ranked ahead of it. So the rank of the first correct item is 1 + #{irrelevant g : s(q, g) ≥
  best relevant score}, and duplicates of the query's match in other groups never help it;
- Recall@K: fraction of queries whose first correct item has rank ≤ K; median rank: `np.median` of
  those ranks (1-based); AP: mean over the query's relevant items of precision at each one's position
  in that tie-broken order; mAP: mean AP over queries.
Queries with no relevant item in the gallery are left out of every number (they have no rank).
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import keras
import numpy as np

from mtmm_keras import _checks

DEFAULT_BLOCK_SIZE = 1024
DEFAULT_KS = (1, 5, 10)
# AP by counting (one pass over the block per relevant item) up to this many relevant items per query;
# beyond it, one sort per query row is cheaper.
_COUNTING_LIMIT = 8


def _as_matrix(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a [n, d] array of embeddings; got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` holds NaN or inf values: retrieval ranks need finite embeddings.")
    return array


def _ids(queries: np.ndarray, gallery: np.ndarray, query_ids: Any, gallery_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    if (query_ids is None) != (gallery_ids is None):
        raise ValueError("Pass both `query_ids` and `gallery_ids`, or neither (then query i matches gallery item i).")
    if query_ids is None:
        if len(queries) != len(gallery):
            raise ValueError(
                "Without ids, `queries` and `gallery` must be row-aligned (same length); "
                f"got {len(queries)} and {len(gallery)} rows. Pass `query_ids` and `gallery_ids`."
            )
        ids = np.arange(len(queries))
        return ids, ids
    query_ids, gallery_ids = np.asarray(query_ids).reshape(-1), np.asarray(gallery_ids).reshape(-1)
    if len(query_ids) != len(queries) or len(gallery_ids) != len(gallery):
        raise ValueError(
            f"`query_ids` must have one id per query ({len(queries)}) and `gallery_ids` one per gallery item "
            f"({len(gallery)}); got {len(query_ids)} and {len(gallery_ids)}."
        )
    return query_ids, gallery_ids


def _check_inputs(queries: Any, gallery: Any, query_ids: Any, gallery_ids: Any, block_size: int):
    queries, gallery = _as_matrix(queries, "queries"), _as_matrix(gallery, "gallery")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"`queries` and `gallery` must be [n, d] with one d; got {queries.shape} and {gallery.shape}.")
    if len(gallery) == 0:
        raise ValueError("`gallery` is empty: there is nothing to retrieve.")
    query_ids, gallery_ids = _ids(queries, gallery, query_ids, gallery_ids)
    return queries, gallery, query_ids, gallery_ids, _checks.positive_int(block_size, "block_size")


def _relevant_scores(scores: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Scores of each row's relevant items (gallery columns lo[i]:hi[i], the gallery being sorted by id),
    flat and grouped by row: (rows, values, counts, starts)."""
    counts = hi - lo
    starts = np.cumsum(counts) - counts
    rows = np.repeat(np.arange(len(scores)), counts)
    cols = np.repeat(lo - starts, counts) + np.arange(int(counts.sum()))
    return rows, scores[rows, cols], counts, starts


def _block_counts(scores, lo, hi, want_ap: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """For one block of queries: #irrelevant items scoring ≥ the best relevant one (rank − 1), and each
    row's AP. #irrelevant ≥ t is #all ≥ t minus #relevant ≥ t: one pass over the block, the rest is
    done on the (few) relevant scores only."""
    rows, values, counts, starts = _relevant_scores(scores, lo, hi)
    has = counts > 0
    best = np.full(len(scores), np.inf, dtype=np.float32)  # rows without a match: count nothing
    if has.any():
        best[has] = np.maximum.reduceat(values, starts[has])
    all_ahead = np.count_nonzero(scores >= best[:, None], axis=1)
    relevant_ahead = np.bincount(rows, weights=values >= best[rows], minlength=len(scores)).astype(np.int64)
    ahead = all_ahead - relevant_ahead
    if not want_ap:
        return ahead, None
    most = int(counts.max(initial=0))
    if most <= _COUNTING_LIMIT:
        return ahead, _ap_by_counting(scores, rows, values, counts, starts, most)
    return ahead, _ap_by_sorting(scores, values, counts, starts)


def _ap_from(positions: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AP of rows whose m-th relevant item (m = 1, 2, ...) has `positions[:, m-1]` = its 1-based
    position in the tie-broken order (0 where the row has fewer relevant items)."""
    m = np.arange(1, positions.shape[1] + 1)
    precision = np.where(positions > 0, m / np.maximum(positions, 1), 0.0)
    return precision.sum(axis=1) / np.maximum(counts, 1)


def _ap_by_counting(scores, rows, values, counts, starts, most) -> np.ndarray:
    """AP with one pass over the block per relevant rank m: the m-th best relevant item (value v) sits at
    position m + #irrelevant ≥ v = m + #all ≥ v − #relevant ≥ v."""
    if most == 0:
        return np.zeros(len(scores))
    order = np.lexsort((-values, rows))  # by row, then descending score
    within = np.arange(len(rows)) - starts[rows]
    top = np.full((len(scores), most), np.inf, dtype=np.float32)  # [b, most], descending, +inf padding
    top[rows, within] = values[order]
    valid = np.arange(most)[None, :] < counts[:, None]
    all_ge = np.stack([np.count_nonzero(scores >= top[:, m : m + 1], axis=1) for m in range(most)], axis=1)
    relevant_ge = ((top[:, None, :] >= top[:, :, None]) & valid[:, None, :]).sum(axis=2)
    positions = np.where(valid, np.arange(1, most + 1) + all_ge - relevant_ge, 0)
    return _ap_from(positions, counts)


def _ap_by_sorting(scores, values, counts, starts) -> np.ndarray:
    """AP from each row sorted once (in place: the block's scores are not needed after this)."""
    scores.sort(axis=1)
    n = scores.shape[1]
    ap = np.zeros(len(scores))
    for i in np.flatnonzero(counts):
        mine = np.sort(values[starts[i] : starts[i] + counts[i]])  # ascending
        descending = mine[::-1]
        all_ge = n - np.searchsorted(scores[i], descending, side="left")
        relevant_ge = len(mine) - np.searchsorted(mine, descending, side="left")
        m = np.arange(1, len(mine) + 1)
        ap[i] = np.mean(m / (m + all_ge - relevant_ge))
    return ap


def first_match_ranks(
    queries: Any,
    gallery: Any,
    query_ids: Any = None,
    gallery_ids: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> np.ndarray:
    """1-based rank of each query's first correct gallery item (ties count against the query); 0 for a
    query with no relevant item in the gallery. Computed in blocks of `block_size` queries."""
    ranks, _ = _ranks_and_ap(queries, gallery, query_ids, gallery_ids, block_size, want_ap=False)
    return ranks


def _ranks_and_ap(queries, gallery, query_ids, gallery_ids, block_size, want_ap):
    queries, gallery, query_ids, gallery_ids, block_size = _check_inputs(queries, gallery, query_ids, gallery_ids, block_size)
    order = np.argsort(gallery_ids, kind="stable")  # a query's relevant items: one run of columns
    sorted_ids = gallery_ids[order]
    gallery_t = np.ascontiguousarray(gallery[order].T)
    try:
        lo, hi = np.searchsorted(sorted_ids, query_ids, "left"), np.searchsorted(sorted_ids, query_ids, "right")
    except TypeError:
        raise TypeError(f"`query_ids` ({query_ids.dtype}) and `gallery_ids` ({gallery_ids.dtype}) must be ids of one "
                        "comparable kind (integers, or strings).") from None
    ranks = np.zeros(len(queries), dtype=np.int64)
    ap = np.zeros(len(queries)) if want_ap else None
    for start in range(0, len(queries), block_size):
        stop = min(start + block_size, len(queries))
        scores = queries[start:stop] @ gallery_t
        ahead, block_ap = _block_counts(scores, lo[start:stop], hi[start:stop], want_ap)
        ranks[start:stop] = np.where(hi[start:stop] > lo[start:stop], ahead + 1, 0)
        if want_ap:
            ap[start:stop] = block_ap
        del scores  # freed before the next block's scores are allocated: one block in memory at a time
    return ranks, ap


def retrieval_metrics(
    queries: Any,
    gallery: Any,
    query_ids: Any = None,
    gallery_ids: Any = None,
    ks: Sequence[int] = DEFAULT_KS,
    block_size: int = DEFAULT_BLOCK_SIZE,
    mean_average_precision: bool = True,
) -> dict[str, float]:
    """`recall_at_<K>` for each K, `median_rank` and (unless `mean_average_precision=False`) `map` of
    `queries` searching `gallery`, by the rules in this module's docstring; blocked over queries."""
    ks = [_checks.positive_int(k, "ks") for k in ks]
    ranks, ap = _ranks_and_ap(queries, gallery, query_ids, gallery_ids, block_size, want_ap=mean_average_precision)
    found = ranks > 0
    if not found.any():
        raise ValueError("No query has a relevant item in the gallery (no gallery id equals any query id).")
    ranks = ranks[found]
    metrics = {f"recall_at_{k}": float((ranks <= k).mean()) for k in ks}
    metrics["median_rank"] = float(np.median(ranks))
    if mean_average_precision:
        metrics["map"] = float(ap[found].mean())
    return metrics


def cross_modal_metrics(
    embeddings: dict[str, Any],
    group_ids: Any = None,
    ks: Sequence[int] = DEFAULT_KS,
    block_size: int = DEFAULT_BLOCK_SIZE,
    mean_average_precision: bool = True,
) -> dict[str, float]:
    """`retrieval_metrics` for every ordered pair of modalities (a queries b's whole set, and b queries a's):
    keys `<a>_to_<b>_recall_at_<K>`, `<a>_to_<b>_median_rank`, `<a>_to_<b>_map`. The embeddings are
    row-aligned; `group_ids` (one per row) makes same-group items relevant, else row i matches row i."""
    if not isinstance(embeddings, dict) or len(embeddings) < 2:
        raise ValueError(f"`embeddings` must be a dict of at least 2 modalities' [n, d] arrays; got {type(embeddings).__name__}"
                         + (f" with keys {list(embeddings)}" if isinstance(embeddings, dict) else "") + ".")
    metrics = {}
    for a, b in itertools.permutations(embeddings, 2):
        result = retrieval_metrics(embeddings[a], embeddings[b], group_ids, group_ids, ks=ks, block_size=block_size,
                                   mean_average_precision=mean_average_precision)
        metrics.update({f"{a}_to_{b}_{key}": value for key, value in result.items()})
    return metrics


def retrieval_recall(
    queries: Any,
    gallery: Any,
    ks: Sequence[int] = (1, 5),
    query_ids: Any = None,
    gallery_ids: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> dict[str, float]:
    """Fraction of queries whose match is among the top-K gallery items by inner product (`recall_at_<K>`).

    Without ids, query i matches gallery item i; with ids, any gallery item with the query's id matches.
    `retrieval_metrics` without the median rank and mAP.
    """
    result = retrieval_metrics(queries, gallery, query_ids, gallery_ids, ks=ks, block_size=block_size,
                               mean_average_precision=False)
    return {key: value for key, value in result.items() if key.startswith("recall_at_")}


class RetrievalEvaluation(keras.callbacks.Callback):
    """At each epoch end, embed `x` with the model and search the whole set in every direction between
    modalities (blocked, `cross_modal_metrics`); logs `<prefix><a>_to_<b>_recall_at_<K>`, `..._median_rank` and
    `..._map` into the epoch logs (so `history.history` and later callbacks such as EarlyStopping see them).

    `x`: the model's inputs (dict by modality); `y`: group ids, one per row (`None`: row i matches row i).
    """

    def __init__(self, x: Any, y: Any = None, ks: Sequence[int] = (1, 5), block_size: int = DEFAULT_BLOCK_SIZE,
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
        """Embed the validation set, score every direction and add the `val_...` keys to `logs`."""
        self.last = self.evaluate()
        if logs is not None:
            logs.update({self.prefix + key: value for key, value in self.last.items()})


__all__ = ["RetrievalEvaluation", "cross_modal_metrics", "first_match_ranks", "retrieval_metrics", "retrieval_recall"]
