"""Experts: a bank of E small MLPs ("experts") on the same input, computed as one batched matmul per level."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from mtmm_keras import _checks


@keras.saving.register_keras_serializable(package="mtmm")
class Experts(keras.layers.Layer):
    """`num_experts` independent MLPs of widths `units`, all reading the same `[batch, in]` input.

    Output `[batch, num_experts, units[-1]]`: the expert axis is what a gate (`mk.layers.SoftmaxGate`,
    `mk.layers.DSelectKGate`) weighs and `mk.layers.MixExperts` sums over. Level i's kernel is stacked
    on the expert axis (`[E, in_i, units_i]`), so each level is one matmul for all experts instead of
    E small Dense layers (the `StackedDense` pattern): expert e equals `Dense` layers holding
    `kernel_i[e]`, `bias_i[e]`.
    """

    def __init__(
        self,
        num_experts: int,
        units: Sequence[int] | int,
        activation: Any = "relu",
        use_bias: bool = True,
        kernel_initializer: Any = None,
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = _checks.positive_int(num_experts, "num_experts")
        self.units = _checks.units_tuple(units, "units", allow_empty=False)
        _checks.activation(activation, "activation")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        # Per-expert Glorot-uniform: VarianceScaling counts the expert axis into the fans, scale=E undoes it.
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer
            or keras.initializers.VarianceScaling(scale=float(self.num_experts), mode="fan_avg", distribution="uniform")
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape: Any) -> None:
        """Create `Experts`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"Experts expects a [batch, features] input with a known feature size, got {input_shape}.")
        self.kernels, self.biases = [], []
        fan_in = input_shape[-1]
        for i, width in enumerate(self.units):
            self.kernels.append(self.add_weight(
                name=f"kernel{i + 1}", shape=(self.num_experts, fan_in, width),
                initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
            ))
            if self.use_bias:
                self.biases.append(self.add_weight(
                    name=f"bias{i + 1}", shape=(self.num_experts, width),
                    initializer=self.bias_initializer, regularizer=self.bias_regularizer,
                ))
            fan_in = width

    def call(self, inputs: Any) -> Any:
        """Run `Experts` on its inputs (the computation is described in the class docstring)."""
        experts, in_dim, width = self.kernels[0].shape
        # Level 1: every expert reads the same features, one [batch, in] @ [in, E·units] matmul.
        kernel = ops.reshape(ops.transpose(self.kernels[0], (1, 0, 2)), (in_dim, experts * width))
        x = ops.reshape(ops.matmul(inputs, kernel), (-1, experts, width))
        x = self.activation(x + self.biases[0] if self.use_bias else x)
        # Deeper levels: expert e reads its own slice, one batched [E, batch, in] @ [E, in, units] matmul.
        for i in range(1, len(self.units)):
            x = ops.transpose(ops.matmul(ops.transpose(x, (1, 0, 2)), self.kernels[i]), (1, 0, 2))
            x = self.activation(x + self.biases[i] if self.use_bias else x)
        return x

    def compute_output_shape(self, input_shape: Any) -> tuple:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return (input_shape[0], self.num_experts, self.units[-1])

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            units=list(self.units),
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config
