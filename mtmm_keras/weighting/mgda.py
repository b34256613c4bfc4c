"""MGDA: the minimum-norm point of the convex hull of the task gradients, by Frank-Wolfe.

Désidéri, "Multiple-gradient descent algorithm (MGDA) for multiobjective optimization", C. R. Math.
2012; solver: Algorithm 2 of Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018. Same iterations and stopping rule as TorchJD 0.18's `MGDA` / `MGDAWeighting`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.weighting import _gramian
from mtmm_keras.weighting._base import Weighting, register


@keras.saving.register_keras_serializable(package="mtmm")
@register("mgda")
class MGDA(Weighting):
    """Weights on the simplex whose combination of the task gradients has (near) minimum norm.

    Frank-Wolfe from the uniform weights: at most `max_iters` steps, and the weights stop changing
    after the first step whose size γ falls below `epsilon` (TorchJD breaks out of its loop there;
    here the loop has a fixed length so that it compiles).

    Args:
        epsilon: step size γ below which the optimisation stops.
        max_iters: maximum number of Frank-Wolfe steps.
    """

    level = "gradient"

    def __init__(self, epsilon: float = 0.001, max_iters: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = _checks.positive_float(epsilon, "epsilon")
        if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters <= 0:
            raise ValueError(f"`max_iters` must be a positive integer, got {max_iters!r}.")
        self.max_iters = int(max_iters)

    def gramian_weights(self, gramian: Any) -> Any:
        """MGDA's task weights `[T]` from the Gramian `[T, T]` of the per-task gradients (see the class docstring)."""
        gramian = ops.convert_to_tensor(gramian)
        t = _gramian.num_tasks_of(gramian)
        dtype = gramian.dtype
        epsilon = self.epsilon

        def step(alpha: Any, done: Any) -> tuple[Any, Any]:
            g_alpha = ops.matmul(gramian, alpha)
            e_t = ops.one_hot(ops.argmin(g_alpha), t, dtype=dtype)
            a = ops.sum(alpha * ops.matmul(gramian, e_t))
            b = ops.sum(alpha * g_alpha)
            c = ops.sum(e_t * ops.matmul(gramian, e_t))
            denominator = b + c - 2.0 * a
            ratio = (b - a) / ops.where(denominator > 0, denominator, ops.ones_like(denominator))
            gamma = ops.where(c <= a, ops.ones_like(a), ops.where(b <= a, ops.zeros_like(a), ratio))
            updated = (1.0 - gamma) * alpha + gamma * e_t
            alpha = ops.where(done, alpha, updated)
            return alpha, ops.logical_or(done, gamma < epsilon)

        alpha0 = ops.ones((t,), dtype=dtype) / t
        # A graph while-loop: stops at the first step with γ < epsilon, or after max_iters steps.
        alpha, _ = ops.while_loop(
            lambda alpha, done: ops.logical_not(done),
            step,
            (alpha0, ops.convert_to_tensor(False)),
            maximum_iterations=self.max_iters,
        )
        return alpha

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(epsilon=self.epsilon, max_iters=self.max_iters)
        return config
