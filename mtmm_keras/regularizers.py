"""ParameterDistance: the soft-sharing penalty α·Ω, Ω = Σ_t Σ_k ‖θ_t − θ_k‖² over stacked tower weights."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks


def parameter_distance(stacked_weights: Any) -> Any:
    """Ω for one weight stacked on a leading tower axis `[T, ...]`.

    Ω = Σ_t Σ_k ‖θ_t − θ_k‖² over *ordered* pairs (each unordered pair counted twice, the
    diagonal is zero), exactly the spec's double sum with no extra normalisation. It is computed
    as 2T·Σ_t ‖θ_t − θ̄‖² (θ̄ the tower mean), which is the same number without forming T² differences.
    """
    num_towers = stacked_weights.shape[0]
    flat = ops.reshape(stacked_weights, (num_towers, -1))
    centered = flat - ops.mean(flat, axis=0, keepdims=True)
    return 2.0 * num_towers * ops.sum(ops.square(centered))


@keras.saving.register_keras_serializable(package="mtmm")
class ParameterDistance(keras.regularizers.Regularizer):
    """Penalty α·Ω pulling the matching weights of T task towers together (soft parameter sharing).

    Apply it to a weight whose first axis indexes towers (e.g. `mk.layers.StackedDense` kernels and
    biases). Because ‖·‖² adds up over parameter groups, summing the penalty over every stacked
    weight of the towers gives α·Σ_t Σ_k ‖θ_t − θ_k‖² for the whole towers θ_t.
    """

    def __init__(self, alpha: float = 1e-3):
        self.alpha = _checks.non_negative_float(alpha, "alpha")

    def __call__(self, x: Any) -> Any:
        """α · Ω for a weight stacked on a leading tower axis `[towers, ...]`."""
        if len(x.shape) < 2:
            raise ValueError(
                f"ParameterDistance needs a weight stacked on a leading tower axis [towers, ...]; got shape {tuple(x.shape)}."
            )
        return self.alpha * parameter_distance(x)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        return {"alpha": self.alpha}


__all__ = ["ParameterDistance", "parameter_distance"]
