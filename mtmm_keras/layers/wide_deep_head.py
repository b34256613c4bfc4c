"""A task head that adds linear "wide" paths from raw inputs to the deep features' logits (Wide & Deep, Cheng et
al., "Wide & Deep Learning for Recommender Systems", DLRS 2016; the linear part of every DeepCTR model)."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from mtmm_keras import _checks


@keras.saving.register_keras_serializable(package="mtmm")
class WideDeepHead(keras.layers.Layer):
    """`[deep, wide_1, …, wide_k]` → `activation(deep · W + b + Σ_i wide_i(x_i))`, `units` wide.

    `wide_vocab_sizes[i]` says what input i is:
    - an int `V`: token ids in `[0, V)` (0 = padding) of shape `[batch]` or `[batch, length]`; its path is a bag of
      words, one trainable weight per word and unit summed over the non-padding ids (a logistic regression on word
      counts, which a pooled embedding under dropout does not reproduce on short texts);
    - `None`: a float feature vector `[batch, features]`; its path is one linear map (no bias: `b` is shared).
    The wide weights start at zero, so the head starts as the plain deep head; `wide_l2` puts an L2 penalty on them
    (`wide_l2 · Σ w²` per step, as `keras.regularizers.L2`). The head's deep weights keep Dense's names and order
    (`kernel`, `bias`), so code that sets a head's bias from the task's prior works unchanged.
    """

    def __init__(self, units: int, activation: Any = None, wide_vocab_sizes: Sequence[int | None] = (),
                 wide_l2: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = _checks.positive_int(units, "units")
        self.activation = keras.activations.get(activation)
        sizes = list(wide_vocab_sizes)
        if not sizes:
            raise ValueError("`wide_vocab_sizes` needs at least one entry (one per wide input); a head without wide "
                             "inputs is a keras.layers.Dense.")
        for i, size in enumerate(sizes):
            if size is not None and (_checks.positive_int(size, f"wide_vocab_sizes[{i}]") < 2):
                raise ValueError(f"`wide_vocab_sizes[{i}]` must be a vocabulary size >= 2 (id 0 is padding) or None "
                                 f"for a float input, got {size!r}.")
        self.wide_vocab_sizes = sizes
        self.wide_l2 = _checks.non_negative_float(wide_l2, "wide_l2")

    def build(self, input_shape: Any) -> None:
        """Create the deep kernel and bias, and one zero-initialised weight table per wide input."""
        deep_shape, *wide_shapes = input_shape
        if len(wide_shapes) != len(self.wide_vocab_sizes):
            raise ValueError(f"WideDeepHead {self.name!r} was built for {len(self.wide_vocab_sizes)} wide input(s) "
                             f"(wide_vocab_sizes) but called with {len(wide_shapes)}.")
        self.kernel = self.add_weight(name="kernel", shape=(int(deep_shape[-1]), self.units),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        regularizer = keras.regularizers.L2(self.wide_l2) if self.wide_l2 else None
        self.wide_weights = []
        for i, (size, shape) in enumerate(zip(self.wide_vocab_sizes, wide_shapes)):
            if size is not None and (len(shape) not in (1, 2) or (len(shape) == 2 and shape[-1] is None)):
                raise ValueError(f"WideDeepHead {self.name!r}: the token-id wide input {i} must be [batch] or "
                                 f"[batch, length] with a known length, got {tuple(shape)}.")
            if size is None and (len(shape) != 2 or shape[-1] is None):
                raise ValueError(f"WideDeepHead {self.name!r}: the float wide input {i} must be [batch, features] "
                                 f"with known features, got {tuple(shape)}.")
            rows = size if size is not None else int(shape[-1])
            self.wide_weights.append(self.add_weight(name=f"wide_{i}", shape=(rows, self.units), initializer="zeros",
                                                     regularizer=regularizer))

    def call(self, inputs: Sequence[Any]) -> Any:
        """The head's output for `[deep, *wide]`."""
        deep, *wide = inputs
        logits = ops.matmul(deep, self.kernel) + self.bias
        for size, table, x in zip(self.wide_vocab_sizes, self.wide_weights, wide):
            if size is None:
                logits = logits + ops.matmul(ops.cast(x, logits.dtype), table)
                continue
            ids = ops.cast(x, "int32")
            length = 1 if len(ids.shape) == 1 else int(ids.shape[-1])
            # a gather over 1-D indices (LiteRT's GPU accelerator refuses 2-D ones), back to [batch, length, units]
            rows = ops.reshape(ops.take(table, ops.reshape(ids, (-1,)), axis=0), (-1, length, self.units))
            present = ops.reshape(ops.cast(ops.not_equal(ids, 0), logits.dtype), (-1, length, 1))
            logits = logits + ops.sum(rows * present, axis=1)
        return self.activation(logits)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        """`[batch, units]`."""
        return (input_shape[0][0], self.units)

    def get_config(self) -> dict:
        """Config for `from_config` (units, activation, the wide inputs' vocabulary sizes, wide_l2)."""
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "wide_vocab_sizes": list(self.wide_vocab_sizes), "wide_l2": self.wide_l2}
