"""Backend-neutral pieces of the gradient-level train step: the Gramian and the combined gradients."""

from __future__ import annotations

from typing import Any, Sequence

from keras import ops


def gramian(task_gradients: Sequence[Any]) -> Any:
    """G = J Jᵀ `[T, T]` from, per shared variable, the stacked task gradients `[T, *shape]`."""
    total = None
    for stacked in task_gradients:
        rows = ops.reshape(stacked, (ops.shape(stacked)[0], -1))
        part = ops.matmul(rows, ops.transpose(rows))
        total = part if total is None else total + part
    return total


def combine(stacked: Any, weights: Any) -> Any:
    """Σ_t w_t g_t for one variable's stacked task gradients `[T, *shape]`."""
    return ops.tensordot(ops.cast(weights, stacked.dtype), stacked, axes=1)
