"""GatedFusion: the Gated Multimodal Unit (Arevalo et al. 2017), h_m = tanh(W_m x_m), z = σ(W_z [x_1..x_M]),
h = z ⊙ h_1 + (1 − z) ⊙ h_2; for M > 2 modalities one softmax gate per modality and unit."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.layers.modality_mask import masked_softmax, present, zero_missing


@keras.saving.register_keras_serializable(package="mtmm")
class GatedFusion(keras.layers.Layer):
    """Fuse M modality vectors (sizes may differ) into one `[batch, units]` vector with learned gates.

    Each modality gets its own view h_m = tanh(W_m x_m + b_m) (`[batch, units]`); the gates read every
    modality at once, a = W_z [x_1, …, x_M] + b_z. For two modalities this is the paper's GMU: one sigmoid
    gate per unit, z = σ(a), h = z ⊙ h_1 + (1 − z) ⊙ h_2 (computed as softmax over the logits (a, 0),
    which equals (σ(a), 1 − σ(a))). For M > 2 (the generalisation): a holds M logits per unit and the
    gates are their softmax over modalities, z_m = softmax_m(a_m), h = Σ_m z_m ⊙ h_m (for M = 2 the same
    family: softmax(a_1, a_2) = σ(a_1 − a_2)). `use_bias=False` gives the paper's equations exactly.

    `modality_mask` (`[batch, M]`, 1 = present): a missing modality's x_m is replaced by zeros before any
    weight sees it and its gate is closed (z_m = 0, the present gates renormalised), so whatever its input
    held, the output is the same; a row with every modality missing fuses to the zero vector.
    With `return_gates=True` the call returns `(fused, z)`, z: `[batch, M, units]` (sums to 1 over M).

    Args:
        units: size of the fused vector (and of every h_m).
        activation: the views' activation (the paper's tanh).
        use_bias: add b_m and b_z.
        kernel_initializer: initializer of W_m and W_z.
    """

    def __init__(self, units: int, activation: Any = "tanh", use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = _checks.positive_int(units, "units")
        _checks.activation(activation, "activation")
        self.activation = keras.activations.get(activation)
        if not isinstance(use_bias, bool):
            raise TypeError(f"`use_bias` must be True or False, got {use_bias!r}.")
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @staticmethod
    def _sizes(input_shape: Any) -> list[int]:
        if not (isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple))):
            raise ValueError(f"GatedFusion takes a list of [batch, features] tensors, one per modality; got {input_shape}.")
        shapes = [tuple(s) for s in input_shape]
        if len(shapes) < 2:
            raise ValueError(f"GatedFusion needs at least 2 modalities, got {len(shapes)}.")
        if any(len(s) != 2 or s[-1] is None for s in shapes):
            raise ValueError(f"GatedFusion inputs must each be [batch, features] with a known size; got shapes {shapes}.")
        return [int(s[-1]) for s in shapes]

    def build(self, input_shape: Any) -> None:
        """Create `GatedFusion`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        sizes = self._sizes(input_shape)
        self.num_modalities = len(sizes)
        self.view_kernels = [
            self.add_weight(name=f"W_{m}", shape=(d, self.units), initializer=self.kernel_initializer)
            for m, d in enumerate(sizes)
        ]
        self.view_biases = [
            self.add_weight(name=f"b_{m}", shape=(self.units,), initializer="zeros") for m in range(len(sizes))
        ] if self.use_bias else []
        gate_logits = self.units if len(sizes) == 2 else len(sizes) * self.units
        self.gate_kernel = self.add_weight(name="W_z", shape=(sum(sizes), gate_logits), initializer=self.kernel_initializer)
        self.gate_bias = self.add_weight(name="b_z", shape=(gate_logits,), initializer="zeros") if self.use_bias else None

    def call(self, inputs: Any, modality_mask: Any = None, return_gates: bool = False) -> Any:
        """Run `GatedFusion` on its inputs (the computation is described in the class docstring)."""
        xs = list(inputs)
        mask = None
        if modality_mask is not None:
            mask = present(modality_mask, xs[0].dtype)
            xs = [zero_missing(x, mask[:, m:m + 1]) for m, x in enumerate(xs)]
        views = []
        for m, x in enumerate(xs):
            view = ops.matmul(x, self.view_kernels[m])
            if self.use_bias:
                view = view + self.view_biases[m]
            views.append(self.activation(view))
        h = ops.stack(views, axis=1)  # [B, M, units]
        a = ops.matmul(ops.concatenate(xs, axis=-1), self.gate_kernel)
        if self.use_bias:
            a = a + self.gate_bias
        if self.num_modalities == 2 and mask is None:
            # softmax over (a, 0) is (σ(a), 1 − σ(a)): one sigmoid, no stack and no softmax over the modality axis,
            # which TensorFlow's oneDNN kernel runs between two transposes (2.5× slower training on CPU)
            z = ops.sigmoid(a)
            fused = views[1] + z * (views[0] - views[1])
            return (fused, ops.stack([z, 1.0 - z], axis=1)) if return_gates else fused
        if self.num_modalities == 2:
            logits = ops.stack([a, ops.zeros_like(a)], axis=1)  # softmax → (σ(a), 1 − σ(a))
        else:
            logits = ops.reshape(a, (-1, self.num_modalities, self.units))
        gates = ops.softmax(logits, axis=1) if mask is None else masked_softmax(logits, mask, axis=1)
        fused = ops.sum(gates * h, axis=1)
        if return_gates:
            return fused, gates
        return fused

    def compute_output_spec(self, inputs: Any, modality_mask: Any = None, return_gates: bool = False) -> Any:
        """The output's shape and dtype for symbolic inputs, without running the layer."""
        sizes = self._sizes([tuple(t.shape) for t in inputs])
        batch, dtype = inputs[0].shape[0], inputs[0].dtype
        fused = keras.KerasTensor((batch, self.units), dtype=dtype)
        if return_gates:
            return fused, keras.KerasTensor((batch, len(sizes), self.units), dtype=dtype)
        return fused

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(
            units=self.units,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
