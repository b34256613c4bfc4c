"""Unit-length rows with a finite gradient everywhere, on every backend.

`keras.layers.UnitNormalization` computes `x * min(rsqrt(Σx²), 1/ε)`: for an all-zero row (silence, a blank
image, a ReLU tower that switched off) rsqrt gives inf and its gradient times 0 gives NaN on JAX and PyTorch
(TensorFlow happens to return 1/ε). One such row in a batch turns every weight into NaN. Here the bound sits
inside the root, `x * rsqrt(max(Σx², ε²))`: the same values (to float rounding), and the gradient at a zero
row is 1/ε on every backend. The sum runs in float32 so that mixed precision cannot underflow ε² to 0.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mtmm")
class L2Normalization(keras.layers.Layer):
    """Divide each row by its L2 norm along `axis` (norms below `epsilon` count as `epsilon`)."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-12, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"`axis` must be an integer, got {axis!r}.")
        if not 0.0 < float(epsilon) < 1.0:
            raise ValueError(f"`epsilon` must be in (0, 1), got {epsilon!r}.")
        self.axis = axis
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def call(self, inputs: Any) -> Any:
        """`inputs` divided by their L2 norm along `axis`, computed in float32, returned in the compute dtype."""
        x = ops.cast(inputs, "float32")
        square_sum = ops.sum(ops.square(x), axis=self.axis, keepdims=True)
        unit = x * ops.rsqrt(ops.maximum(square_sum, self.epsilon * self.epsilon))
        return ops.cast(unit, self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The input's shape: normalising changes no dimension."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """Keras's layer config plus `axis` and `epsilon`."""
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}
