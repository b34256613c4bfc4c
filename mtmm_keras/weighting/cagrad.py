"""CAGrad: the update closest to the mean gradient (within a ball) that best helps the worst task.

Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021 (Algorithm 1);
same problem and normalisation as TorchJD 0.18's `CAGrad` / `CAGradWeighting`, which solve it with
cvxpy/Clarabel. Here it is solved in-graph: see `CAGrad.gramian_weights`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.weighting import _gramian
from mtmm_keras.weighting._base import Weighting, register

_BISECTION_STEPS = 60


@keras.saving.register_keras_serializable(package="mtmm")
@register("cagrad")
class CAGrad(Weighting):
    """Weights 1/T + (√φ/‖g_w‖)·w, w = argmin over the simplex of g_wᵀg₀ + √φ‖g_w‖, on the Gramian
    normalised by its trace; g₀ is the mean gradient, g_w = Jᵀw and √φ = c‖g₀‖.

    The convex problem is solved exactly for T ≤ `_gramian.MAX_EXACT_TASKS`: its KKT conditions are
    linear per support once w is rescaled by √φ/‖g_w‖, so every support is solved in closed form
    at once (one batched solve, no loop; `_gramian.linear_plus_norm_simplex`). Beyond that, w also
    minimises the quadratic (w + s/T·1)ᵀG(w + s/T·1) with s = ‖g_w‖/√φ (its linearisation), and a
    bisection on s (fixed step count) runs a simplex QP per step (`_gramian.simplex_qp`).

    Args:
        c: scale of the ball's radius around the mean gradient (0 gives the mean).
        norm_eps: the Gramian is zeroed below this trace, and the weights are zero when ‖g_w‖ is below
            it (a Pareto-stationary point), as in TorchJD.
    """

    level = "gradient"

    def __init__(self, c: float = 0.5, norm_eps: float = 0.0001, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.c = _checks.non_negative_float(c, "c")
        self.norm_eps = _checks.non_negative_float(norm_eps, "norm_eps")

    def gramian_weights(self, gramian: Any) -> Any:
        """CAGrad's task weights `[T]` from the Gramian `[T, T]` of the per-task gradients (see the class docstring)."""
        gramian = ops.convert_to_tensor(gramian)
        t = _gramian.num_tasks_of(gramian)
        dtype = gramian.dtype
        g = _gramian.normalize(gramian, self.norm_eps)
        g = 0.5 * (g + ops.transpose(g))
        mean = ops.ones((t,), dtype=dtype) / t
        g0_sq = ops.sum(mean * ops.matmul(g, mean))
        sqrt_phi = self.c * ops.sqrt(ops.maximum(g0_sq, 0.0))

        def norm_of(w: Any) -> Any:
            return ops.sqrt(ops.maximum(ops.sum(w * ops.matmul(g, w)), 0.0))

        if self.c == 0.0:
            w = ops.one_hot(ops.argmin(ops.matmul(g, mean)), t, dtype=dtype)
        elif t <= _gramian.MAX_EXACT_TASKS:
            rho = ops.maximum(sqrt_phi, 1e-30)
            w = _gramian.linear_plus_norm_simplex(g, ops.matmul(g, mean), rho, self.norm_eps)
        else:
            rho = ops.maximum(sqrt_phi, 1e-30)

            def bisect(low: Any, high: Any) -> tuple[Any, Any]:
                middle = 0.5 * (low + high)
                below = rho * middle <= norm_of(_gramian.simplex_qp(g, middle * mean))
                return ops.where(below, middle, low), ops.where(below, high, middle)

            # ρ·s - ‖g_w(s)‖ is ≤ 0 at s = 0 and ≥ 0 at s = 1/ρ (rows of the normalised J have norm ≤ 1).
            # Until the interval is at float32 resolution (at most _BISECTION_STEPS halvings).
            low, high = ops.while_loop(
                lambda low, high: high - low > 1e-7 * high,
                bisect,
                (ops.zeros((), dtype), 1.0 / rho),
                maximum_iterations=_BISECTION_STEPS,
            )
            w = _gramian.simplex_qp(g, 0.5 * (low + high) * mean)
        g_w_norm = norm_of(w)
        large = g_w_norm >= self.norm_eps
        scale = sqrt_phi / ops.where(large, g_w_norm, ops.ones_like(g_w_norm))
        return ops.where(large, mean + scale * w, ops.zeros_like(w))

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(c=self.c, norm_eps=self.norm_eps)
        return config
