"""CrossStitch (Misra et al., CVPR 2016): learnable linear mixing of T task towers' activations."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks


@keras.saving.register_keras_serializable(package="mtmm")
class CrossStitch(keras.layers.Layer):
    """x̃_i = Σ_j α_ij x_j for towers i, j: input and output `[batch, T, d]`, weights `alpha` `[T, T]`.

    One T×T matrix per stitch, shared over the d units. `alpha` starts near the identity: `self_weight`
    on the diagonal and (1 − self_weight)/(T − 1) off it, so each row sums to 1 and each tower starts
    mostly as itself (0.9 / 0.1 by default, one of the paper's settings); with T = 1 it is [[1]].
    """

    def __init__(self, num_towers: int, self_weight: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.num_towers = _checks.positive_int(num_towers, "num_towers")
        self.self_weight = _checks.float_in_range(self_weight, "self_weight", 0.0, 1.0)

    def initial_alpha(self) -> list[list[float]]:
        """The starting matrix: `self_weight` on the diagonal, the rest of each row spread evenly."""
        t = self.num_towers
        if t == 1:
            return [[1.0]]
        other = (1.0 - self.self_weight) / (t - 1)
        return [[self.self_weight if i == j else other for j in range(t)] for i in range(t)]

    def build(self, input_shape: Any) -> None:
        """Create `CrossStitch`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[1] != self.num_towers:
            raise ValueError(
                f"CrossStitch with num_towers={self.num_towers} expects [batch, {self.num_towers}, features], got {input_shape}."
            )
        self.alpha = self.add_weight(name="alpha", shape=(self.num_towers, self.num_towers),
                                     initializer=keras.initializers.Constant(self.initial_alpha()))

    def call(self, inputs: Any) -> Any:
        # [batch, d, T] @ αᵀ [T, T] → [batch, d, T]: one matmul over the tower axis, no reshape of the
        # dynamic batch (TFLite's int8 calibration rejects the reshape-based form) and no einsum.
        """Run `CrossStitch` on its inputs (the computation is described in the class docstring)."""
        mixed = ops.matmul(ops.transpose(inputs, (0, 2, 1)), ops.transpose(self.alpha))
        return ops.transpose(mixed, (0, 2, 1))

    def compute_output_shape(self, input_shape: Any) -> tuple:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(num_towers=self.num_towers, self_weight=self.self_weight)
        return config
