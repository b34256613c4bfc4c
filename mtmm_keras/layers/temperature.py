"""The learned logit scale (and bias) of the CLIP / SigLIP losses, held as trainable model weights.

A Keras loss holds no weights, so the temperature lives in this small layer: `joint_embedding(loss="clip"
| "siglip")` attaches it to the `JointEmbeddingModel` (outside the inference graph), `fit` trains it, the
`.keras` file saves it, and `JointEmbeddingModel.compute_loss` feeds its values to the loss.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks


class _ClampAbove(keras.constraints.Constraint):
    """Caps the log-scale weight at log(max_logit_scale) after every optimizer step, as open_clip's
    training loop does with `logit_scale.clamp_(0, log(100))` (not registered: rebuilt from the layer's
    config, never serialized on its own)."""

    def __init__(self, high: float):
        self.high = float(high)

    def __call__(self, w: Any) -> Any:
        return ops.minimum(w, ops.cast(self.high, w.dtype))


@keras.saving.register_keras_serializable(package="mtmm")
class LearnedTemperature(keras.layers.Layer):
    """Trainable `logit_scale` (the log of the logits' multiplier) and optional `logit_bias`.

    `scale()` is exp(logit_scale) capped at `max_logit_scale` (CLIP's cap of 100); the weight itself is
    also clamped to ≤ log(max_logit_scale) after every optimizer step, so it never wanders into the flat
    region where its gradient is zero. `bias()` is the bias weight, or None without `init_logit_bias`.
    Calling the layer on a similarity matrix gives the logits `scale() * S + bias()`.
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(1.0 / 0.07),
        init_logit_bias: float | None = None,
        max_logit_scale: float | None = 100.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.init_logit_scale, self.init_logit_bias, self.max_logit_scale = check_temperature_args(
            init_logit_scale, init_logit_bias, max_logit_scale
        )
        high = None if self.max_logit_scale is None else math.log(self.max_logit_scale)
        self.logit_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.init_logit_scale),
            constraint=None if high is None else _ClampAbove(high),
            name="logit_scale",
        )
        self.logit_bias = None
        if self.init_logit_bias is not None:
            self.logit_bias = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.init_logit_bias),
                    name="logit_bias",
            )
        self.built = True

    def scale(self) -> Any:
        """exp(logit_scale), capped at `max_logit_scale` (the gradient flows whenever it is not capped)."""
        log_scale = ops.convert_to_tensor(self.logit_scale)
        if self.max_logit_scale is not None:
            high = ops.cast(math.log(self.max_logit_scale), log_scale.dtype)
            log_scale = ops.where(log_scale > high, high, log_scale)
        return ops.exp(log_scale)

    def bias(self) -> Any:
        """The current logit bias as a tensor (SigLIP), or None when the loss has no bias."""
        return None if self.logit_bias is None else ops.convert_to_tensor(self.logit_bias)

    def call(self, similarity: Any) -> Any:
        """Run `LearnedTemperature` on its inputs (the computation is described in the class docstring)."""
        logits = ops.cast(self.scale(), similarity.dtype) * similarity
        bias = self.bias()
        return logits if bias is None else logits + ops.cast(bias, similarity.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(
            init_logit_scale=self.init_logit_scale,
            init_logit_bias=self.init_logit_bias,
            max_logit_scale=self.max_logit_scale,
        )
        return config


def check_temperature_args(
    init_logit_scale: Any, init_logit_bias: Any, max_logit_scale: Any
) -> tuple[float, float | None, float | None]:
    """Validated (init_logit_scale, init_logit_bias, max_logit_scale); errors name the bad argument."""
    scale = _checks._real(init_logit_scale, "init_logit_scale", "a finite number (the log of the logits' multiplier)")
    bias = None
    if init_logit_bias is not None:
        bias = _checks._real(init_logit_bias, "init_logit_bias", "a finite number or None")
    high = None
    if max_logit_scale is not None:
        high = _checks.positive_float(max_logit_scale, "max_logit_scale")
        if scale > math.log(high):
            raise ValueError(
                f"`init_logit_scale` ({scale!r}) is above log(max_logit_scale) = {math.log(high):.4f}: the "
                "initial multiplier exp(init_logit_scale) must not exceed `max_logit_scale`."
            )
    return scale, bias, high
