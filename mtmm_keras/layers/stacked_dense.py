"""StackedDense: T independent Dense layers ("towers") computed as one batched matmul."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks


@keras.saving.register_keras_serializable(package="mtmm")
class StackedDense(keras.layers.Layer):
    """`num_towers` parallel Dense layers with weights stacked on a leading tower axis.

    Input `[batch, in]` (every tower reads the same features) or `[batch, T, in]` (tower t reads
    slice t); output `[batch, T, units]`. Kernel shape `[T, in, units]`, so a regularizer such as
    `mk.regularizers.ParameterDistance` sees all towers' matching weights at once, and one (batched)
    matmul replaces T small ones.
    """

    def __init__(
        self,
        num_towers: int,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = None,
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_towers = _checks.positive_int(num_towers, "num_towers")
        self.units = _checks.positive_int(units, "units")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        # Per-tower Glorot-uniform: VarianceScaling counts the tower axis into the fans, scale=T undoes it.
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer
            or keras.initializers.VarianceScaling(scale=float(self.num_towers), mode="fan_avg", distribution="uniform")
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape: Any) -> None:
        """Create `StackedDense`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        input_shape = tuple(input_shape)
        if len(input_shape) == 3 and input_shape[1] != self.num_towers:
            raise ValueError(
                f"StackedDense with num_towers={self.num_towers} got input shape {input_shape}: "
                f"axis 1 must be {self.num_towers} (or pass a 2-D [batch, features] input)."
            )
        if len(input_shape) not in (2, 3) or input_shape[-1] is None:
            raise ValueError(f"StackedDense expects [batch, features] or [batch, towers, features], got {input_shape}.")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_towers, input_shape[-1], self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.num_towers, self.units),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )

    def call(self, inputs: Any) -> Any:
        """Run `StackedDense` on its inputs (the computation is described in the class docstring)."""
        towers, in_dim, units = self.kernel.shape
        if len(inputs.shape) == 2:
            # Every tower reads the same features: one [batch, in] @ [in, T·units] matmul
            # (the kernel is small, so laying it out as [in, T·units] each step is cheap).
            kernel = ops.reshape(ops.transpose(self.kernel, (1, 0, 2)), (in_dim, towers * units))
            outputs = ops.reshape(ops.matmul(inputs, kernel), (-1, towers, units))
        else:
            # Tower t reads slice t: one batched [T, batch, in] @ [T, in, units] matmul. Measured
            # faster than the equivalent einsum("bti,tio->bto") on TensorFlow and JAX (CPU).
            outputs = ops.transpose(ops.matmul(ops.transpose(inputs, (1, 0, 2)), self.kernel), (1, 0, 2))
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return (input_shape[0], self.num_towers, self.units)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(
            num_towers=self.num_towers,
            units=self.units,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config


@keras.saving.register_keras_serializable(package="mtmm")
class SplitTowers(keras.layers.Layer):
    """Split a `[batch, T, d]` tensor into a list of T `[batch, d]` tensors, one per tower."""

    def call(self, inputs: Any) -> list:
        # unstack, not T strided slices: its gradient is one stack instead of T full-size
        # zero-padded slice gradients that then have to be added up.
        """Run `SplitTowers` on its inputs (the computation is described in the class docstring)."""
        return list(ops.unstack(inputs, num=inputs.shape[1], axis=1))

    def compute_output_shape(self, input_shape: Any) -> list:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        if len(input_shape) != 3 or input_shape[1] is None:
            raise ValueError(f"SplitTowers expects [batch, towers, features] with a known tower count, got {tuple(input_shape)}.")
        return [(input_shape[0], input_shape[2]) for _ in range(input_shape[1])]
