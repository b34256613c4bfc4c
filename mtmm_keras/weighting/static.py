"""Static weighting: the fixed λ_t of each `Task` (L = Σ_t λ_t · L_t), the library's default."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras.weighting._base import Weighting, register


@keras.saving.register_keras_serializable(package="mtmm")
@register("static")
class Static(Weighting):
    """L = Σ_t λ_t L_t with the tasks' own weights λ_t and nothing learned (the seed method's formula).

    The model hands `combine` the λ-scaled task losses λ_t L_t, so the weights it reports are 1; the
    model multiplies them by λ_t for `history.history["weight/<task>"]`. The sum is taken in task
    order with Python's `+`, exactly as Keras's own compiled multi-output loss does, so training is
    bit-for-bit today's.
    """

    def combine(self, task_losses: Any, training: bool = True) -> tuple[Any, Any]:
        """Loss level: (scalar loss to differentiate, weights `[T]` used) from the per-task losses `[T]`, by Static's rule."""
        count = int(task_losses.shape[0])
        total = task_losses[0]
        for t in range(1, count):
            total = total + task_losses[t]
        return total, ops.ones((count,), dtype=task_losses.dtype)
