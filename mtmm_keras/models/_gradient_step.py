"""Backend-neutral pieces of the gradient-level train step: the Gramian and the combined gradients."""

from __future__ import annotations

import inspect
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


def loss_tracker(model: Any) -> Any:
    """Keras's `loss` Mean metric: `model._loss_tracker` (a Keras internal), else the metric named
    'loss' in the public `model.metrics`; a clear error when neither exists."""
    tracker = getattr(model, "_loss_tracker", None)
    if tracker is None:
        tracker = next((m for m in model.metrics if getattr(m, "name", None) == "loss"), None)
    if tracker is None:
        raise RuntimeError(
            "Gradient-level weighting reports `loss` through Keras's loss metric, which this Keras version "
            "does not expose (no `Model._loss_tracker`, no metric named 'loss' in `model.metrics`). Use a "
            "loss-level method (static, uncertainty, dwa, rlw)."
        )
    return tracker


def aggregate(weighting: Any, gramian: Any, task_losses: Any, counts: Any) -> Any:
    """`weighting.aggregate(gramian, task_losses)`, with the per-task labelled-row counts as `counts=`
    for a method that takes them (GradNorm records L_t(0) at a task's first labelled batch)."""
    if "counts" in inspect.signature(weighting.aggregate).parameters:
        return weighting.aggregate(gramian, task_losses, counts=counts)
    return weighting.aggregate(gramian, task_losses)
