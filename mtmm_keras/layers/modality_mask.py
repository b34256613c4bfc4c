"""Missing modalities: the `[batch, M]` presence mask (1 = present), `ModalityDropout` that drops modalities while
training, and the masked operations the fusion layers share (keras.ops only, TFLite built-in ops only)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks

# The name of a fusion model's presence-mask input ([batch, M], 1 = present, columns in `encoders` order): the one
# definition the builders, fit's data checks, the zoo and export read.
MODALITY_MASK = "modality_mask"


def present(mask: Any, dtype: Any = "float32") -> Any:
    """The presence mask as 0/1 floats: an entry counts as present when it is above 0.5."""
    return ops.cast(ops.greater(ops.cast(mask, "float32"), 0.5), dtype)


def safe_divide(numerator: Any, denominator: Any) -> Any:
    """numerator / denominator, and 0 where the denominator is 0 (built-in ops only, unlike divide_no_nan)."""
    nonzero = ops.not_equal(denominator, 0)
    return ops.where(nonzero, numerator / ops.where(nonzero, denominator, ops.ones_like(denominator)), 0.0)


def masked_softmax(logits: Any, mask: Any, axis: int = 1) -> Any:
    """Softmax over `axis` (the modality axis) that gives missing entries weight exactly 0 and renormalises over
    the present ones; a row with nothing present gets all-zero weights (not NaN). `mask`: 0/1 or bool, `[batch, M]`
    (broadcast over the trailing axes of `logits`) or any shape broadcastable to `logits` of the same rank."""
    mask = ops.cast(mask, logits.dtype)
    while len(mask.shape) < len(logits.shape):
        mask = ops.expand_dims(mask, -1)
    # No -inf/-1e9 sentinel: a tensor holding one gets an int8 range so wide that every real logit quantizes
    # to the same value. Missing entries take the row's smallest logit instead, so the shift m is the largest
    # present logit, exp(l - m) <= 1 everywhere, and the mask zeroes the missing terms exactly.
    # The blend is arithmetic, not a select: the logits are finite here (the fusion layers select a missing
    # modality's features away before any weight sees them), and a select whose branches differ in shape
    # (`lowest` is [batch, 1]) keeps LiteRT's GPU accelerator from running the graph.
    lowest = ops.min(logits, axis=axis, keepdims=True)
    logits = logits * mask + lowest * (1.0 - mask)
    shifted = ops.exp(logits - ops.max(logits, axis=axis, keepdims=True)) * mask
    return safe_divide(shifted, ops.sum(shifted, axis=axis, keepdims=True))


def zero_missing(features: Any, column: Any) -> Any:
    """`features` `[batch, ...]` with the rows where `column` (`[batch]` or `[batch, 1]`, 0/1) is 0 replaced by
    zeros, whatever they held (garbage, NaN, inf): a missing modality's features cannot reach the output. A select
    (`ops.where`), never a multiply (NaN·0 = NaN); callers pass `mask[:, m:m + 1]`, not `mask[:, m]`, whose
    shrink-axis slice LiteRT's GPU accelerator cannot run."""
    column = ops.reshape(column, (-1,) + (1,) * (len(features.shape) - 1))
    return ops.where(column > 0, features, ops.zeros_like(features))


@keras.saving.register_keras_serializable(package="mtmm")
class ModalityDropout(keras.layers.Layer):
    """Drop whole modalities while training, so one fused model learns to cope when some are missing.

    Input and output: the presence mask `[batch, M]` (1 = present). Always binarised (> 0.5 is present).
    While training each present modality of each row is dropped (set to 0) with probability `rate`,
    independently; a row whose every present modality was dropped gets one of them back, chosen uniformly,
    so no row ever loses all its modalities (a row that came with none present stays empty). The
    per-modality drop rate is therefore `rate − rate^M / M` for a fully present row (0.197 for rate 0.2,
    M = 3). At inference (and with rate 0) the mask passes through unchanged.

    Args:
        rate: probability of dropping each modality, 0 ≤ rate < 1.
        seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = _checks.dropout_rate(rate, "rate")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError(f"`seed` must be an int or None, got {seed!r}.")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: Any) -> None:
        """Create `ModalityDropout`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                f"ModalityDropout takes the modality mask [batch, modalities] with a known number of modalities; "
                f"got shape {tuple(input_shape)}."
            )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """Run `ModalityDropout` on its inputs (the computation is described in the class docstring)."""
        mask = present(inputs, self.compute_dtype)
        if not training or self.rate == 0.0:
            return mask
        shape = ops.shape(mask)
        keep = ops.cast(keras.random.uniform(shape, seed=self.seed_generator) >= self.rate, mask.dtype)
        kept = mask * keep
        emptied = ops.logical_and(ops.sum(kept, axis=-1, keepdims=True) == 0, ops.sum(mask, axis=-1, keepdims=True) > 0)
        # one present modality chosen uniformly: the largest of (uniform + 1) over present, (uniform) over missing
        pick = ops.argmax(keras.random.uniform(shape, seed=self.seed_generator) + mask, axis=-1)
        restored = ops.one_hot(pick, mask.shape[-1], dtype=mask.dtype)
        return ops.where(emptied, restored, kept)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
