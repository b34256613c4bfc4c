"""IMTL-G: weights under which the combined gradient has equal projections on every task's gradient.

Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021; the generalisation to linearly
dependent gradients (a pseudo-inverse) is from Quintana et al., arXiv:2406.16232. Same math as
TorchJD 0.18's `IMTLG` / `IMTLGWeighting`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras.weighting import _gramian
from mtmm_keras.weighting._base import Weighting, register


@keras.saving.register_keras_serializable(package="mtmm")
@register("imtl")
class IMTLG(Weighting):
    """w ∝ G⁺d with d_i = ‖g_i‖, normalised to sum to one (zero weights if the sum vanishes).

    Then (wᵀJ)·g_i/‖g_i‖ is the same for every task whose gradient is in the span of the others'
    (every task when the gradients are independent): no task is favoured.
    """

    level = "gradient"

    def gramian_weights(self, gramian: Any) -> Any:
        """IMTLG's task weights `[T]` from the Gramian `[T, T]` of the per-task gradients (see the class docstring)."""
        gramian = ops.convert_to_tensor(gramian)
        _gramian.num_tasks_of(gramian)
        norms = ops.sqrt(ops.maximum(ops.diagonal(gramian), 0.0))
        v = ops.matmul(_gramian.pinv_psd(gramian), norms)
        total = ops.sum(v)
        small = ops.abs(total) < 1e-12
        return ops.where(small, ops.zeros_like(v), v / ops.where(small, ops.ones_like(total), total))
