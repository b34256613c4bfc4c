"""Nash-MTL: weights from the Nash bargaining solution between tasks, α ⊙ (Gα) = 1.

Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022 (Algorithm 1); the step logic,
state and norm clipping follow TorchJD 0.18's `NashMTL` (adapted from the authors' code).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.weighting import _gramian
from mtmm_keras.weighting._base import Weighting, register

_NEWTON_STEPS = 60
# A solution whose worst |α_i (Gα)_i - 1| exceeds this counts as "no bargaining solution".
_RESIDUAL_TOLERANCE = 1e-3


def nash_bargaining_weights(gramian: Any, start: Any) -> tuple[Any, Any]:
    """(α, solved): α > 0 with α_i (Gα)_i = 1 for every task, and whether it was found.

    α is the unique minimiser of the strictly convex, self-concordant f(α) = ½αᵀGα - Σ log α_i
    (its gradient is Gα - 1/α); damped Newton from `start` rescaled to the best multiple, with a
    fixed step count. There is no solution when a non-negative combination of the gradients vanishes
    (a zero gradient, two opposed ones): then `solved` is False.
    """
    t = _gramian.num_tasks_of(gramian)
    dtype = gramian.dtype
    g = 0.5 * (gramian + ops.transpose(gramian))
    start = ops.where(ops.all(start > 0), start, ops.ones_like(start))
    curvature = ops.sum(start * ops.matmul(g, start))
    scale = ops.sqrt(t / ops.where(curvature > 0, curvature, ops.ones_like(curvature)))

    eye = ops.eye(t, dtype=dtype)
    ceiling = 1e6 * ops.max(start * scale)  # α beyond this: f is unbounded below, no solution

    def newton(alpha: Any, decrement: Any) -> tuple[Any, Any]:
        # Newton system (G + diag(α)⁻²) Δ = 1/α - Gα, scaled by diag(α) so that its matrix
        # diag(α) G diag(α) + I is never singular: y = Δ / α.
        residual = alpha * ops.matmul(g, alpha) - 1.0  # diag(α)·∇f
        scaled = ops.expand_dims(alpha, 1) * g * ops.expand_dims(alpha, 0)
        # + I, plus a relative ridge so that the solve never fails when α runs off (no solution).
        scaled = scaled + eye * (1.0 + 1e-7 * ops.max(ops.abs(ops.diagonal(scaled))))
        y = ops.linalg.solve(scaled, ops.expand_dims(-residual, 1))[:, 0]
        step = alpha * y
        decrement = ops.sqrt(ops.maximum(-ops.sum(residual * y), 0.0))
        # Damped step 1/(1+λ) keeps α > 0 (self-concordance); a full step once λ is small.
        damping = ops.where(decrement < 0.25, ops.ones_like(decrement), 1.0 / (1.0 + decrement))
        candidate = alpha + damping * step
        ok = ops.logical_and(ops.all(ops.isfinite(candidate)), ops.all(candidate > 0))
        ok = ops.logical_and(ok, ops.max(candidate) <= ceiling)
        return ops.where(ok, candidate, alpha), ops.where(ok, decrement, ops.zeros_like(decrement))

    # Stops once the Newton decrement is at float32 rounding (quadratic convergence), or after
    # _NEWTON_STEPS steps; a rejected step (α would leave the domain) also stops it.
    alpha, _ = ops.while_loop(
        lambda alpha, decrement: decrement > 1e-7,
        newton,
        (start * scale, ops.ones((), dtype=dtype)),
        maximum_iterations=_NEWTON_STEPS,
    )
    residual = ops.max(ops.abs(alpha * ops.matmul(g, alpha) - 1.0))
    solved = ops.logical_and(ops.isfinite(residual), residual < _RESIDUAL_TOLERANCE)
    return alpha, solved


@keras.saving.register_keras_serializable(package="mtmm")
@register("nash_mtl")
class NashMTL(Weighting):
    """Weights α solving α_i (gᵢᵀ Jᵀα) = 1, recomputed every `update_weights_every` calls; the combined
    gradient is scaled down to norm `max_norm` when longer (0 disables the clipping).

    State (non-trainable Keras variables, saved with the model): the last weights `prvs_alpha` (start
    point of the next solve, reused between updates, kept when no solution exists, as TorchJD does)
    and the call counter `step`. TorchJD reaches the solution by sequential convex programming with
    cvxpy/ECOS; here it is the minimiser of a strictly convex function found by damped Newton in-graph.

    Args:
        n_tasks: number of tasks; None until the model calls `build_for_tasks`.
        max_norm: maximum norm of the combined gradient (0: no clipping).
        update_weights_every: solve for new weights on every this-many-th call, reuse them in between.
        optim_niter: TorchJD's number of convex-programming iterations. It has no effect here (the
            Newton solve runs to convergence and has no such setting): any value other than the
            default (20) warns; the value is kept in the config so TorchJD-style configurations round-trip.
    """

    level = "gradient"

    def __init__(
        self,
        n_tasks: int | None = None,
        max_norm: float = 1.0,
        update_weights_every: int = 1,
        optim_niter: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if n_tasks is not None and (isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks <= 0):
            raise ValueError(f"`n_tasks` must be a positive integer or None, got {n_tasks!r}.")
        max_norm = _checks.non_negative_float(max_norm, "max_norm")
        for arg, value in (("update_weights_every", update_weights_every), ("optim_niter", optim_niter)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{arg}` must be a positive integer, got {value!r}.")
        if optim_niter != 20:
            import warnings

            warnings.warn(
                f"NashMTL: `optim_niter`={optim_niter!r} has no effect: this Nash-MTL solves α ⊙ (Gα) = 1 by damped "
                "Newton steps to convergence, not by TorchJD's iterative convex program (the value is only kept "
                "in the config for TorchJD-compatible configurations). Leave it unset.",
                UserWarning,
                stacklevel=2,
            )
        self.max_norm = float(max_norm)
        self.update_weights_every = int(update_weights_every)
        self.optim_niter = int(optim_niter)
        self.n_tasks = None
        self.prvs_alpha = None
        self.step = None
        if n_tasks is not None:
            self.build_for_tasks(n_tasks)

    def build_for_tasks(self, num_tasks: int) -> None:
        """Create NashMTL's state for `num_tasks` tasks (called once the model's tasks are known)."""
        num_tasks = int(num_tasks)
        if self.n_tasks is not None:
            if num_tasks != self.n_tasks:
                raise ValueError(f"`n_tasks` is {self.n_tasks} but the model has {num_tasks} tasks.")
            if self.prvs_alpha is not None:
                return
        super().build_for_tasks(num_tasks)
        self.n_tasks = num_tasks
        self.prvs_alpha = self.add_weight(
            shape=(num_tasks,), initializer="ones", trainable=False, name="prvs_alpha", dtype="float32"
        )
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="step", dtype="int32")

    def reset(self) -> None:
        """Forget the previous weights and the call count (TorchJD's `reset`)."""
        if self.prvs_alpha is not None:
            self.prvs_alpha.assign(ops.ones_like(self.prvs_alpha))
            self.step.assign(0)

    def gramian_weights(self, gramian: Any) -> Any:
        """NashMTL's task weights `[T]` from the Gramian `[T, T]` of the per-task gradients (see the class docstring)."""
        gramian = ops.convert_to_tensor(gramian)
        t = _gramian.num_tasks_of(gramian)
        if self.prvs_alpha is None:
            self.build_for_tasks(t)
        elif t != self.n_tasks:
            raise ValueError(f"`gramian` is for {t} tasks but NashMTL was built for {self.n_tasks}.")
        dtype = gramian.dtype
        previous = ops.cast(self.prvs_alpha, dtype)
        alpha, solved = nash_bargaining_weights(gramian, previous)
        update = ops.logical_and(ops.equal(self.step % self.update_weights_every, 0), solved)
        alpha = ops.where(update, alpha, previous)
        self.prvs_alpha.assign(ops.cast(alpha, self.prvs_alpha.dtype))
        self.step.assign(self.step + 1)
        if self.max_norm > 0:
            norm = ops.sqrt(ops.maximum(ops.sum(alpha * ops.matmul(gramian, alpha)), 0.0))
            alpha = ops.where(norm > self.max_norm, alpha / ops.where(norm > 0, norm, 1.0) * self.max_norm, alpha)
        return alpha

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(
            n_tasks=self.n_tasks,
            max_norm=self.max_norm,
            update_weights_every=self.update_weights_every,
            optim_niter=self.optim_niter,
        )
        return config
