"""UPGrad: project every task's gradient onto the dual cone of all of them, then average.

Quintana et al., "Jacobian Descent For Multi-Objective Optimization", arXiv:2406.16232; the same math
as TorchJD 0.18's `UPGrad` / `UPGradWeighting` with its default `QuadprogProjector`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import keras
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.weighting import _gramian
from mtmm_keras.weighting._base import Weighting, register


@keras.saving.register_keras_serializable(package="mtmm")
@register("upgrad")
class UPGrad(Weighting):
    """Unconflicting projection of gradients: the update never conflicts with any task's gradient.

    Row i of J, scaled by `pref_vector[i]` (default 1/T), is projected onto the dual cone
    {x : Jx ≥ 0} by solving min_v vᵀGv s.t. v ≥ pref_i·e_i (exactly, see `_gramian.box_qp`);
    the weights are the sum of the T solutions.

    Args:
        pref_vector: weights `[T]` of the projected rows; None means the mean (1/T each).
        norm_eps: the Gramian is divided by its trace, or zeroed below this trace (TorchJD's
            `QuadprogProjector(norm_eps=...)`).
        reg_eps: added to the normalised Gramian's diagonal so that it is positive definite
            (TorchJD's `QuadprogProjector(reg_eps=...)`).
    """

    level = "gradient"

    def __init__(
        self,
        pref_vector: Sequence[float] | None = None,
        norm_eps: float = 0.0001,
        reg_eps: float = 0.0001,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if pref_vector is not None:
            if isinstance(pref_vector, (str, bytes)) or not isinstance(pref_vector, Iterable):
                raise TypeError(f"`pref_vector` must be a sequence of finite numbers or None, got {pref_vector!r}.")
            pref_vector = [_checks._real(x, f"pref_vector[{i}]", "a finite number") for i, x in enumerate(pref_vector)]
            if not pref_vector:
                raise ValueError("`pref_vector` must not be empty.")
        self.pref_vector = pref_vector
        self.norm_eps = _checks.non_negative_float(norm_eps, "norm_eps")
        self.reg_eps = _checks.non_negative_float(reg_eps, "reg_eps")

    def gramian_weights(self, gramian: Any) -> Any:
        """UPGrad's task weights `[T]` from the Gramian `[T, T]` of the per-task gradients (see the class docstring)."""
        gramian = ops.convert_to_tensor(gramian)
        t = _gramian.num_tasks_of(gramian)
        if self.pref_vector is None:
            pref = ops.ones((t,), dtype=gramian.dtype) / t
        else:
            if len(self.pref_vector) != t:
                raise ValueError(f"`pref_vector` has {len(self.pref_vector)} entries but there are {t} tasks.")
            pref = ops.convert_to_tensor(self.pref_vector, dtype=gramian.dtype)
        g = _gramian.regularize(_gramian.normalize(gramian, self.norm_eps), self.reg_eps)
        solutions = _gramian.box_qp(g, ops.diag(pref))  # [T, T]: row i projects pref_i · e_i
        return ops.sum(solutions, axis=0)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(pref_vector=self.pref_vector, norm_eps=self.norm_eps, reg_eps=self.reg_eps)
        return config
