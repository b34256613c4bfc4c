"""Gates of mixture-of-experts models: input → weights over E experts `[batch, E]`, and the weighted sum.

`SoftmaxGate` is the gate of MMoE (Ma et al., KDD 2018) and PLE (Tang et al., RecSys 2020):
w = softmax(W x + b). `DSelectKGate` is DSelect-k (Hazimeh et al., NeurIPS 2021): a sparse,
differentiable choice of at most k experts. `MixExperts` sums the experts with the weights.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from mtmm_keras import _checks


class _HiddenMixin:
    """The optional hidden Dense layers (`hidden_units`) a gate puts before its output projection."""

    def _build_hidden(self, in_dim: int) -> int:
        self.hidden_kernels, self.hidden_biases = [], []
        for i, width in enumerate(self.hidden_units):
            self.hidden_kernels.append(self.add_weight(name=f"hidden_kernel{i + 1}", shape=(in_dim, width),
                                                       initializer=self.kernel_initializer))
            self.hidden_biases.append(self.add_weight(name=f"hidden_bias{i + 1}", shape=(width,), initializer="zeros"))
            in_dim = width
        return in_dim

    def _hidden(self, x: Any) -> Any:
        for kernel, bias in zip(self.hidden_kernels, self.hidden_biases):
            x = self.activation(ops.matmul(x, kernel) + bias)
        return x

    def _hidden_config(self) -> dict[str, Any]:
        return dict(hidden_units=list(self.hidden_units), activation=keras.activations.serialize(self.activation),
                    kernel_initializer=keras.initializers.serialize(self.kernel_initializer))


def _input_dim(input_shape: Any, layer: str) -> int:
    input_shape = tuple(input_shape)
    if len(input_shape) != 2 or input_shape[-1] is None:
        raise ValueError(f"{layer} expects a [batch, features] input with a known feature size, got {input_shape}.")
    return int(input_shape[-1])


@keras.saving.register_keras_serializable(package="mtmm")
class SoftmaxGate(_HiddenMixin, keras.layers.Layer):
    """Weights over `num_experts` experts, w = softmax(W h(x) + b) (h: optional `hidden_units` MLP).

    Output `[batch, num_experts]`, non-negative and summing to 1: the MMoE / PLE gate, one per task.
    """

    def __init__(self, num_experts: int, hidden_units: Sequence[int] = (), activation: Any = "relu",
                 kernel_initializer: Any = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_experts = _checks.positive_int(num_experts, "num_experts")
        self.hidden_units = _checks.units_tuple(hidden_units, "hidden_units")
        _checks.activation(activation, "activation")
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape: Any) -> None:
        """Create `SoftmaxGate`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        in_dim = self._build_hidden(_input_dim(input_shape, "SoftmaxGate"))
        self.kernel = self.add_weight(name="kernel", shape=(in_dim, self.num_experts), initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.num_experts,), initializer="zeros")

    def call(self, inputs: Any) -> Any:
        """Run `SoftmaxGate` on its inputs (the computation is described in the class docstring)."""
        return ops.softmax(ops.matmul(self._hidden(inputs), self.kernel) + self.bias, axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return (input_shape[0], self.num_experts)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(num_experts=self.num_experts, **self._hidden_config())
        return config


@keras.saving.register_keras_serializable(package="mtmm")
class DSelectKGate(_HiddenMixin, keras.layers.Layer):
    """DSelect-k (Hazimeh et al., NeurIPS 2021), per-example: a smooth choice of at most `k` experts.

    Each of k selectors picks one expert through m = ⌈log₂ E⌉ binary digits, digit j "on" with probability
    S(z_j), where S is the smooth step (0 below −γ/2, 1 above γ/2, a cubic in between) so selectors can
    become exactly one-hot; the k choices are mixed by α = softmax. Output `[batch, num_experts]`,
    non-negative and summing to 1. When E is not a power of two, the 2^m − E codes past the last expert
    fold onto expert (code mod E), so every selector still sums to exactly 1 (our choice; the paper
    instead penalises selecting them). The paper's optional entropy penalty on the selectors is not added.
    """

    def __init__(self, num_experts: int, k: int = 2, gamma: float = 1.0, hidden_units: Sequence[int] = (),
                 activation: Any = "relu", kernel_initializer: Any = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_experts = _checks.positive_int(num_experts, "num_experts")
        self.k = _checks.positive_int(k, "k")
        self.gamma = _checks.positive_float(gamma, "gamma")
        self.hidden_units = _checks.units_tuple(hidden_units, "hidden_units")
        _checks.activation(activation, "activation")
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.num_digits = max(1, math.ceil(math.log2(self.num_experts)))
        codes = 2**self.num_digits
        # digits[c, j] = digit j of code c; fold[c, e] = 1 where code c selects expert e (c mod E)
        self._digits = np.array([[(c >> j) & 1 for j in range(self.num_digits)] for c in range(codes)], dtype="float32")
        self._fold = np.eye(self.num_experts, dtype="float32")[np.arange(codes) % self.num_experts]

    def build(self, input_shape: Any) -> None:
        """Create `DSelectKGate`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        in_dim = self._build_hidden(_input_dim(input_shape, "DSelectKGate"))
        self.selector_kernel = self.add_weight(name="selector_kernel", shape=(in_dim, self.k * self.num_digits),
                                               initializer=self.kernel_initializer)
        self.selector_bias = self.add_weight(name="selector_bias", shape=(self.k * self.num_digits,), initializer="zeros")
        if self.k > 1:  # one selector needs no mixing weights
            self.mix_kernel = self.add_weight(name="mix_kernel", shape=(in_dim, self.k), initializer=self.kernel_initializer)
            self.mix_bias = self.add_weight(name="mix_bias", shape=(self.k,), initializer="zeros")

    def smooth_step(self, t: Any) -> Any:
        """S(t): 0 for t ≤ −γ/2, 1 for t ≥ γ/2, −2t³/γ³ + 3t/(2γ) + ½ in between (C¹, so gradients flow)."""
        t = ops.clip(t, -self.gamma / 2.0, self.gamma / 2.0)
        return -2.0 / self.gamma**3 * t * t * t + 1.5 / self.gamma * t + 0.5

    def call(self, inputs: Any) -> Any:
        """Run `DSelectKGate` on its inputs (the computation is described in the class docstring)."""
        h = self._hidden(inputs)
        z = ops.reshape(ops.matmul(h, self.selector_kernel) + self.selector_bias, (-1, self.k, 1, self.num_digits))
        on = self.smooth_step(z)  # [B, k, 1, m]
        digits = ops.convert_to_tensor(self._digits, dtype=on.dtype)  # [2^m, m], broadcast to [B, k, 2^m, m]
        factors = digits * on + (1.0 - digits) * (1.0 - on)
        selectors = factors[..., 0]
        for j in range(1, self.num_digits):  # a product over m ≤ a few digits: plain multiplies, no ReduceProd
            selectors = selectors * factors[..., j]  # [B, k, 2^m], each selector sums to 1 over the codes
        if self.num_experts != 2**self.num_digits:
            selectors = ops.matmul(selectors, ops.convert_to_tensor(self._fold, dtype=on.dtype))  # [B, k, E]
        if self.k == 1:
            return selectors[:, 0]
        alpha = ops.softmax(ops.matmul(h, self.mix_kernel) + self.mix_bias, axis=-1)  # [B, k]
        return ops.sum(selectors * ops.expand_dims(alpha, -1), axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return (input_shape[0], self.num_experts)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(num_experts=self.num_experts, k=self.k, gamma=self.gamma, **self._hidden_config())
        return config


@keras.saving.register_keras_serializable(package="mtmm")
class MixExperts(keras.layers.Layer):
    """Σ_e w_e · x_e: call on `[experts [batch, E, d], weights [batch, E]]`, returns `[batch, d]`."""

    def call(self, inputs: Sequence[Any]) -> Any:
        """Run `MixExperts` on its inputs (the computation is described in the class docstring)."""
        experts, weights = inputs
        return ops.sum(experts * ops.expand_dims(weights, -1), axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        experts, weights = (tuple(s) for s in input_shape)
        if len(experts) != 3 or len(weights) != 2 or (None not in (experts[1], weights[1]) and experts[1] != weights[1]):
            raise ValueError(f"MixExperts expects [[batch, E, d], [batch, E]] with one E, got {experts} and {weights}.")
        return (experts[0], experts[2])
