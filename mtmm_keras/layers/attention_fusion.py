"""AttentionFusion: learned attention over modalities, e = vᵀ tanh(W h + b), α = softmax(e), h = Σ α h."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.layers.modality_mask import masked_softmax, present


@keras.saving.register_keras_serializable(package="mtmm")
class AttentionFusion(keras.layers.Layer):
    """Fuse M modality vectors of equal size d into one vector with learned attention weights.

    Call it on a list of M tensors `[batch, d]` (or one stacked tensor `[batch, M, d]`).
    `modality_mask` (`[batch, M]`, 1 = present, > 0.5 counts as present) removes missing modalities from the
    softmax, so their α is exactly 0 and their vectors (zeroed first) cannot reach the output; a row with
    every modality missing fuses to the zero vector. With `return_attention_scores=True` the call returns `(fused, alpha)`.

    Args:
        attention_units: width of the hidden scoring layer W (default: d).
        kernel_initializer: initializer for W and v.
    """

    def __init__(self, attention_units: int | None = None, kernel_initializer: Any = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.attention_units = None if attention_units is None else _checks.positive_int(attention_units, "attention_units")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @staticmethod
    def _stacked_shape(input_shape: Any) -> tuple:
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            shapes = [tuple(s) for s in input_shape]
            if len(shapes) < 2:
                raise ValueError(f"AttentionFusion needs at least 2 modalities, got {len(shapes)}.")
            for s in shapes:
                if len(s) != 2:
                    raise ValueError(f"AttentionFusion inputs must each be [batch, features]; got shapes {shapes}.")
            dims = {s[-1] for s in shapes}
            if len(dims) != 1 or None in dims:
                raise ValueError(
                    f"AttentionFusion inputs must share one known feature size (project them first); got shapes {shapes}."
                )
            return (shapes[0][0], len(shapes), shapes[0][-1])
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(f"AttentionFusion expects a list of [batch, d] tensors or one [batch, M, d] tensor; got {shape}.")
        return shape

    def build(self, input_shape: Any) -> None:
        """Create `AttentionFusion`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        _, _, dim = self._stacked_shape(input_shape)
        units = self.attention_units or dim
        self.W = self.add_weight(name="W", shape=(dim, units), initializer=self.kernel_initializer)
        self.b = self.add_weight(name="b", shape=(units,), initializer="zeros")
        self.v = self.add_weight(name="v", shape=(units,), initializer=self.kernel_initializer)

    def call(self, inputs: Any, modality_mask: Any = None, return_attention_scores: bool = False) -> Any:
        """Run `AttentionFusion` on its inputs (the computation is described in the class docstring)."""
        h = ops.stack(inputs, axis=1) if isinstance(inputs, (list, tuple)) else inputs  # [B, M, d]
        if modality_mask is not None:
            mask = present(modality_mask, h.dtype)
            # a missing modality's vector is replaced by zeros first: whatever it held never reaches the output
            h = ops.where(ops.expand_dims(mask, -1) > 0, h, ops.zeros_like(h))
        scores = ops.matmul(ops.tanh(ops.matmul(h, self.W) + self.b), self.v)  # e: [B, M]
        if modality_mask is None:
            alpha = ops.softmax(scores, axis=-1)
        else:
            # α = 0 for missing modalities, renormalised over the present ones; a row with none present gets α = 0
            alpha = masked_softmax(scores, mask, axis=-1)
        fused = ops.sum(h * ops.expand_dims(alpha, -1), axis=1)
        if return_attention_scores:
            return fused, alpha
        return fused

    def compute_output_spec(self, inputs: Any, modality_mask: Any = None, return_attention_scores: bool = False) -> Any:
        """The output's shape and dtype for symbolic inputs, without running the layer."""
        batch, modalities, dim = self._stacked_shape(
            [tuple(t.shape) for t in inputs] if isinstance(inputs, (list, tuple)) else tuple(inputs.shape)
        )
        dtype = (inputs[0] if isinstance(inputs, (list, tuple)) else inputs).dtype
        fused = keras.KerasTensor((batch, dim), dtype=dtype)
        if return_attention_scores:
            return fused, keras.KerasTensor((batch, modalities), dtype=dtype)
        return fused

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(
            attention_units=self.attention_units,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
