"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, "Multi-Task Learning Using Uncertainty
to Weigh Losses for Scene Geometry and Semantics"): each task learns its homoscedastic noise σ_t."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.weighting._base import Weighting, register


@keras.saving.register_keras_serializable(package="mtmm")
@register("uncertainty")
class Uncertainty(Weighting):
    """L = Σ_t ½·exp(−s_t)·L_t + ½·s_t with a learned s_t = log σ_t² per task.

    This is Kendall et al.'s Gaussian-likelihood form (their eq. 7: 1/(2σ²)·L + log σ), written in
    s = log σ² for numerical stability as the paper recommends; the same form is used for every task
    (LibMTL does likewise). The weights reported are ½·exp(−s_t) (times λ_t in `history`). s_t starts
    at `initial_log_variance` (0: weight ½) and is trained by the model's optimizer with the network;
    it is saved with the model.
    """

    def __init__(self, initial_log_variance: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initial_log_variance = _checks._real(initial_log_variance, "initial_log_variance", "a finite number")

    def build_for_tasks(self, num_tasks: int) -> None:
        """Create Uncertainty's state for `num_tasks` tasks (called once the model's tasks are known)."""
        if getattr(self, "log_variance", None) is None:
            self.log_variance = self.add_weight(
                shape=(int(num_tasks),), name="log_variance", trainable=True,
                initializer=keras.initializers.Constant(self.initial_log_variance),
            )
        super().build_for_tasks(num_tasks)

    def combine(self, task_losses: Any, training: bool = True) -> tuple[Any, Any]:
        """Loss level: (scalar loss to differentiate, weights `[T]` used) from the per-task losses `[T]`, by Uncertainty's rule."""
        s = ops.cast(self.log_variance, task_losses.dtype)
        weights = 0.5 * ops.exp(-s)
        return ops.sum(weights * task_losses + 0.5 * s), weights

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        return {**super().get_config(), "initial_log_variance": self.initial_log_variance}
