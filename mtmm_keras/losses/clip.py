"""CLIP (symmetric InfoNCE) and SigLIP (pairwise sigmoid) losses with a learned temperature.

The math is in two pure functions of (group ids, similarity, scale, bias), written to match open_clip's
`ClipLoss` and `SigLipLoss` (tests/test_losses_contrastive.py checks values and gradients). The learned
scale and bias are weights of the model (`LearnedTemperature`), not of the loss: `JointEmbeddingModel`
passes their current values in `y_pred` as `{"similarity", "logit_scale", "logit_bias"}`.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from mtmm_keras.losses._similarity import check_square, negative_mask
from mtmm_keras.layers.temperature import LearnedTemperature, check_temperature_args

_MASKED = -1e9  # logit of a left-out candidate (same group): exp() is exactly 0 in float32


def clip_loss(group_ids: Any, similarity: Any, logit_scale: Any, logit_bias: Any = None) -> Any:
    """Per-anchor symmetric InfoNCE on logits = logit_scale · S (+ logit_bias).

    Anchor i's value is ½·(CE of row i + CE of column i) with the diagonal as the target, so the mean over
    anchors is open_clip's `ClipLoss` (`logit_scale` is the multiplier, already exp()'d, as there). With
    `group_ids`, off-diagonal items of the anchor's group leave the softmax: they are not negatives.
    """
    similarity = ops.convert_to_tensor(similarity)  # NumPy in: `array - tensor` fails on torch
    check_square(similarity, "CLIPLoss")
    logits = _logits(similarity, logit_scale, logit_bias)
    eye = ops.eye(ops.shape(similarity)[0], dtype=logits.dtype)
    keep = negative_mask(logits, group_ids) + eye
    masked = ops.where(keep > 0, logits, ops.full_like(logits, _MASKED))
    positives = ops.diagonal(logits)
    rows = ops.logsumexp(masked, axis=1) - positives
    cols = ops.logsumexp(masked, axis=0) - positives
    return 0.5 * (rows + cols)


def siglip_loss(group_ids: Any, similarity: Any, logit_scale: Any, logit_bias: Any = None) -> Any:
    """Per-anchor pairwise sigmoid loss (Zhai et al. 2023) on logits = logit_scale · S + logit_bias.

    Every pair (i, k) is a binary classification, label +1 for a match and −1 otherwise; the pair's loss
    is −log σ(label · logit). Anchor i gets half of its row's and half of its column's sum, so the mean
    over anchors is open_clip's `SigLipLoss` (−Σ log σ / batch). With `group_ids`, every pair of the same
    group is a match (+1): a sigmoid judges each pair on its own, and a same-group pair is a true match,
    not an unknown to leave out.
    """
    similarity = ops.convert_to_tensor(similarity)  # NumPy in: `array - tensor` fails on torch
    check_square(similarity, "SigLIPLoss")
    logits = _logits(similarity, logit_scale, logit_bias)
    matches = 1.0 - negative_mask(logits, group_ids)  # same group, the diagonal included
    labels = 2.0 * matches - 1.0
    pairs = -ops.log_sigmoid(labels * logits)
    return 0.5 * (ops.sum(pairs, axis=1) + ops.sum(pairs, axis=0))


def _logits(similarity: Any, logit_scale: Any, logit_bias: Any) -> Any:
    logits = ops.cast(logit_scale, similarity.dtype) * similarity
    return logits if logit_bias is None else logits + ops.cast(logit_bias, similarity.dtype)


class _LearnedTemperatureLoss(keras.losses.Loss):
    """Shared by CLIPLoss and SigLIPLoss: reads y_pred, holds the initial values of the learned weights."""

    learned_temperature = True  # tells JointEmbeddingModel to pass its LearnedTemperature's values
    _fn = staticmethod(clip_loss)

    def __init__(self, init_logit_scale: float, init_logit_bias: float | None, max_logit_scale: float | None,
                 reduction: str, name: str, dtype: Any):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.init_logit_scale, self.init_logit_bias, self.max_logit_scale = check_temperature_args(
            init_logit_scale, init_logit_bias, max_logit_scale
        )

    def make_temperature(self, name: str = "learned_temperature") -> LearnedTemperature:
        """The layer whose trainable weights (`logit_scale`, `logit_bias`) this loss learns with."""
        return LearnedTemperature(self.init_logit_scale, self.init_logit_bias, self.max_logit_scale, name=name)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if isinstance(y_pred, dict):
            unknown = set(y_pred) - {"similarity", "logit_scale", "logit_bias"}
            if "similarity" not in y_pred or unknown:
                raise ValueError(
                    f"{type(self).__name__}: a dict `y_pred` holds 'similarity' and optionally 'logit_scale' "
                    f"(the multiplier) and 'logit_bias'; got keys {sorted(y_pred)}."
                )
            similarity = y_pred["similarity"]
            scale = y_pred.get("logit_scale", self._initial_scale())
            bias = y_pred.get("logit_bias", self.init_logit_bias)
        else:  # a plain similarity matrix: the initial scale and bias, fixed
            similarity, scale, bias = y_pred, self._initial_scale(), self.init_logit_bias
        return self._fn(y_true, similarity, scale, bias)

    def _initial_scale(self) -> float:
        scale = math.exp(self.init_logit_scale)
        return scale if self.max_logit_scale is None else min(scale, self.max_logit_scale)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(init_logit_scale=self.init_logit_scale, max_logit_scale=self.max_logit_scale)
        return config


@keras.saving.register_keras_serializable(package="mtmm")
class CLIPLoss(_LearnedTemperatureLoss):
    """Symmetric InfoNCE with a learned temperature (CLIP, Radford et al. 2021; open_clip's `ClipLoss`).

    `y_true`: group ids `[B]` (same-group items are not negatives). `y_pred`: the `[B, B]` similarity
    matrix (scored with the initial scale, fixed) or `{"similarity": S, "logit_scale": exp(t), "logit_bias": b}`
    with the model's learned values, which is what `joint_embedding(loss="clip")` trains: the scale starts
    at 1/0.07 (`init_logit_scale = log(1/0.07)`) and is capped at `max_logit_scale` = 100.
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(1.0 / 0.07),
        max_logit_scale: float | None = 100.0,
        reduction: str = "sum_over_batch_size",
        name: str = "clip_loss",
        dtype: Any = None,
    ):
        super().__init__(init_logit_scale, None, max_logit_scale, reduction, name, dtype)


@keras.saving.register_keras_serializable(package="mtmm")
class SigLIPLoss(_LearnedTemperatureLoss):
    """Pairwise sigmoid loss with a learned temperature and bias (SigLIP, Zhai et al. 2023; open_clip's
    `SigLipLoss`).

    `y_true`: group ids `[B]` (same-group pairs count as matches, label +1). `y_pred` as for `CLIPLoss`.
    The paper's initialisation: t′ = log 10 (`init_logit_scale`, so the multiplier starts at 10) and
    b = −10 (`init_logit_bias`); the multiplier is capped at `max_logit_scale` like CLIP's.
    """

    _fn = staticmethod(siglip_loss)

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        max_logit_scale: float | None = 100.0,
        reduction: str = "sum_over_batch_size",
        name: str = "siglip_loss",
        dtype: Any = None,
    ):
        if init_logit_bias is None:
            raise ValueError("`init_logit_bias` must be a finite number for SigLIPLoss (the paper uses -10), got None.")
        super().__init__(init_logit_scale, init_logit_bias, max_logit_scale, reduction, name, dtype)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(init_logit_bias=self.init_logit_bias)
        return config
