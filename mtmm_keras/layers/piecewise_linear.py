"""Piecewise-linear encoding of numeric features (Gorishniy et al., "On Embeddings for Numerical Features in
Tabular Deep Learning", 2022) with the bin edges stored as (non-trainable) weights."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from mtmm_keras import _checks, _int8



@keras.saving.register_keras_serializable(package="mtmm")
class PiecewiseLinearEncoding(keras.layers.Layer):
    """`[batch, features]` → `[batch, features × num_bins]`: feature j's value x in bin t with edges
    (b_t, b_t+1) becomes 1 for every bin below it, (x − b_t) / (b_t+1 − b_t) for its own and 0 above; the first
    bin extends down and the last bin up without a clip, so values outside the training range stay linear.

    `adapt(data)` puts the edges at the quantiles of the training data (each feature's num_bins + 1 quantiles,
    widened to a strictly increasing sequence where values repeat); until then they are evenly spaced over
    [-2, 2] (standardised features). The graph is one MatMul + bias (each feature repeated num_bins times and
    scaled by its bin's inverse width), a clip to [0, 1] and the open ends added back through 0/1 masks: 2-D ops
    every runtime, LiteRT's GPU accelerator included, runs, with no large constant (int8 quantization keeps them).
    """

    def __init__(self, num_bins: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.num_bins = _checks.positive_int(num_bins, "num_bins")

    def build(self, input_shape: Any) -> None:
        """Create the bin starts and inverse widths for inputs of shape `input_shape`."""
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"PiecewiseLinearEncoding needs a known last dimension, got {tuple(input_shape)}.")
        self.features = int(features)
        edges = np.tile(np.linspace(-2.0, 2.0, self.num_bins + 1), (self.features, 1))
        start, inverse_width = self._bins(edges)
        self.start = self.add_weight(name="start", shape=start.shape, initializer=keras.initializers.Constant(start),
                                     trainable=False)
        self.inverse_width = self.add_weight(name="inverse_width", shape=inverse_width.shape,
                                             initializer=keras.initializers.Constant(inverse_width), trainable=False)
        repeat = np.zeros((self.features, self.features * self.num_bins), "float32")
        for j in range(self.features):
            repeat[j, j * self.num_bins:(j + 1) * self.num_bins] = 1.0
        self._repeat = repeat
        first = np.zeros(self.num_bins, "float32")
        last = np.zeros(self.num_bins, "float32")
        first[0], last[-1] = 1.0, 1.0
        self._first, self._last = np.tile(first, self.features), np.tile(last, self.features)

    def _bins(self, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        edges = np.asarray(edges, "float64")
        return (edges[:, :-1].reshape(-1).astype("float32"),
                (1.0 / np.diff(edges, axis=1)).reshape(-1).astype("float32"))

    def adapt(self, data: Any) -> None:
        """Put the bin edges at the quantiles of `data` (`[n, features]`, NumPy or tensor)."""
        data = np.asarray(data, dtype="float64")
        if data.ndim != 2 or not len(data) or not np.all(np.isfinite(data)):
            raise ValueError(f"PiecewiseLinearEncoding.adapt needs a finite [n, features] array, got shape {data.shape}.")
        if not self.built:
            self.build(data.shape)
        if data.shape[1] != self.features:
            raise ValueError(f"PiecewiseLinearEncoding has {self.features} features, adapt got {data.shape[1]}.")
        edges = np.quantile(data, np.linspace(0.0, 1.0, self.num_bins + 1), axis=0).T  # [features, bins + 1]
        for j in range(self.features):
            spread = float(np.ptp(data[:, j])) or 1.0
            for t in range(1, self.num_bins + 1):  # repeated values (integer years, small counts): widen
                edges[j, t] = max(edges[j, t], edges[j, t - 1] + 1e-3 * spread)
        start, inverse_width = self._bins(edges)
        self.start.assign(start)
        self.inverse_width.assign(inverse_width)

    def call(self, inputs: Any) -> Any:
        """Run `PiecewiseLinearEncoding` on its inputs (the computation is described in the class docstring)."""
        # Kept float32 in full-integer int8 files (`_int8.FLOAT_SCOPE`): one int8 step of a raw column (a year, a
        # log vote count) spans several quantile bins, so quantizing this layer's input or output erases them.
        with keras.name_scope(_int8.FLOAT_SCOPE):
            return self._encode(inputs)

    def _encode(self, inputs: Any) -> Any:
        dtype = self.compute_dtype
        # (x @ repeat − start) · inverse_width as one matmul + bias (constants folded at export: a FULLY_CONNECTED
        # whose columns each hold one weight, so int8 per-channel scales keep every bin's width exactly)
        kernel = ops.cast(self._repeat, dtype) * ops.cast(self.inverse_width, dtype)
        ratio = ops.matmul(ops.cast(inputs, dtype), kernel) - ops.cast(self.start * self.inverse_width, dtype)
        inside = ops.minimum(ops.maximum(ratio, 0.0), 1.0)
        # the first bin continues below its start, the last above its end; 0/1 masks, no large constants (int8-safe)
        below = ops.cast(self._first, dtype) * ops.minimum(ratio, 0.0)
        above = ops.cast(self._last, dtype) * ops.maximum(ratio - 1.0, 0.0)
        return inside + below + above

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return (*input_shape[:-1], input_shape[-1] * self.num_bins)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(num_bins=self.num_bins)
        return config
