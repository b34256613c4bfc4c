"""Standardization: (x − mean) / sqrt(variance + ε) with statistics stored as (non-trainable) weights."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="mtmm")
class Standardization(keras.layers.Layer):
    """Per-feature standardisation whose mean and variance are plain weights.

    Like `keras.layers.Normalization`, but the statistics stay variables inside the graph (the
    Keras layer turns them into captured constants), so SavedModel, TFLite *and* ONNX exports
    carry them. Call `adapt(data)` once on training data; the statistics save with the weights.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape: Any) -> None:
        """Create `Standardization`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(f"Standardization needs a known last dimension, got input shape {tuple(input_shape)}.")
        self.mean = self.add_weight(name="mean", shape=(dim,), initializer="zeros", trainable=False)
        self.variance = self.add_weight(name="variance", shape=(dim,), initializer="ones", trainable=False)

    def adapt(self, data: Any) -> None:
        """Set mean and variance from `data` (`[n, features]`, NumPy or tensor)."""
        data = np.asarray(data, dtype="float32")
        if data.ndim != 2 or not np.all(np.isfinite(data)):
            raise ValueError(f"Standardization.adapt needs a finite [n, features] array, got shape {data.shape}.")
        if not self.built:
            self.build(data.shape)
        self.mean.assign(data.mean(axis=0))
        self.variance.assign(data.var(axis=0))

    def call(self, inputs: Any) -> Any:
        """Run `Standardization` on its inputs (the computation is described in the class docstring)."""
        return (inputs - self.mean) / ops.sqrt(self.variance + self.epsilon)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config
