"""Max-margin ranking loss with in-batch negatives: Σ_k max(0, s(x_i, y_k) − s(x_i, y_i) + δ)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.losses._similarity import check_square, negative_mask


def max_margin_ranking(
    group_ids: Any,
    similarity: Any,
    margin: float = 0.2,
    hardest_negative: bool = False,
    bidirectional: bool = True,
) -> Any:
    """Per-anchor hinge loss on a `[B, B]` similarity matrix whose diagonal holds the positive pairs.

    Row i (anchor x_i) sums max(0, s_ik − s_ii + δ) over its negatives k; with `hardest_negative`
    only the largest term counts (VSE++). `bidirectional` adds the same for column anchors y_i.
    `group_ids` (`[B]` or None) stops items of the same group from counting as negatives.
    """
    similarity = ops.convert_to_tensor(similarity)  # NumPy in: `array - tensor` fails on torch
    check_square(similarity, "MaxMarginRankingLoss")
    negatives = negative_mask(similarity, group_ids)
    positives = ops.diagonal(similarity)
    reduce = ops.max if hardest_negative else ops.sum
    rows = ops.relu(similarity - ops.expand_dims(positives, 1) + margin) * negatives
    loss = reduce(rows, axis=1)
    if bidirectional:
        cols = ops.relu(similarity - ops.expand_dims(positives, 0) + margin) * negatives
        loss = loss + reduce(cols, axis=0)
    return loss


@keras.saving.register_keras_serializable(package="mtmm")
class MaxMarginRankingLoss(keras.losses.Loss):
    """The spec's max-margin ranking loss over in-batch negatives.

    `y_pred` is a `[B, B]` similarity matrix (row i: query i against all candidates; the diagonal is
    the matching pair). `y_true` holds group ids `[B]` (pass `arange(B)` when every item is its own
    group); items sharing a group are not counted as negatives. Per-anchor values are summed over
    negatives; the default reduction then averages over anchors (`reduction="sum"` gives the spec's
    plain double sum).
    """

    def __init__(
        self,
        margin: float = 0.2,
        hardest_negative: bool = False,
        bidirectional: bool = True,
        reduction: str = "sum_over_batch_size",
        name: str = "max_margin_ranking_loss",
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = _checks.non_negative_float(margin, "margin")
        self.hardest_negative = bool(hardest_negative)
        self.bidirectional = bool(bidirectional)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Run `MaxMarginRankingLoss` on its inputs (the computation is described in the class docstring)."""
        return max_margin_ranking(y_true, y_pred, self.margin, self.hardest_negative, self.bidirectional)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(margin=self.margin, hardest_negative=self.hardest_negative, bidirectional=self.bidirectional)
        return config
