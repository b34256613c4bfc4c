"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks"): learn loss weights so that every task's gradient
norm on the shared parameters grows with how far that task lags behind."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.weighting._base import Weighting, register


def gradnorm_step(weights: np.ndarray, norms: np.ndarray, losses: np.ndarray, initial: np.ndarray, alpha: float,
                  learning_rate: float) -> np.ndarray:
    """The paper's Algorithm 1 for one step in NumPy: the weights w(t+1) after w(t)."""
    ratios = losses / initial
    relative = ratios / ratios.mean()
    scaled_norms = weights * norms
    target = scaled_norms.mean() * relative ** alpha  # a constant in the paper's gradient
    gradient = np.sign(scaled_norms - target) * norms  # d/dw_i Σ_j |w_j‖g_j‖ − target_j|
    updated = np.maximum(weights - learning_rate * gradient, 1e-6)
    return len(weights) * updated / updated.sum()


@keras.saving.register_keras_serializable(package="mtmm")
@register("gradnorm")
class GradNorm(Weighting):
    """Loss weights w_t (start at 1, kept summing to T) trained by gradient descent on
    L_grad = Σ_t |w_t‖∇_W L_t‖ − mean_k(w_k‖∇_W L_k‖) · r_t^α|, r_t = (L_t/L_t(0)) / mean_k(L_k/L_k(0)),
    with the target treated as a constant (the paper's Algorithm 1); the network's step uses Σ_t w_t ∇L_t.

    It needs the per-task gradient norms, so it runs in the gradient-level train step: ‖∇_W L_t‖ is
    √G_tt of the Gramian over all shared parameters W (the paper uses the last shared layer; over all
    of them is what LibMTL does and it costs nothing extra here). The weights move by plain gradient
    descent with `learning_rate` (the paper uses the network's optimizer); `alpha` is the paper's α
    (1.5 in most of its experiments). The weights, L_t(0) and the step count are saved with the model.
    """

    level = "gradient"

    def __init__(self, alpha: float = 1.5, learning_rate: float = 0.025, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = _checks.non_negative_float(alpha, "alpha")
        self.learning_rate = _checks.positive_float(learning_rate, "learning_rate")

    def build_for_tasks(self, num_tasks: int) -> None:
        """Create GradNorm's state for `num_tasks` tasks (called once the model's tasks are known)."""
        if getattr(self, "loss_weights", None) is None:
            count = int(num_tasks)
            self.loss_weights = self.add_weight(shape=(count,), name="loss_weights", trainable=False, initializer="ones")
            self.initial_losses = self.add_weight(shape=(count,), name="initial_losses", trainable=False,
                                                  initializer="zeros")  # 0: L_t(0) not recorded yet
            self.steps = self.add_weight(shape=(), name="steps", trainable=False, initializer="zeros")
        super().build_for_tasks(num_tasks)

    def aggregate(self, gramian: Any, task_losses: Any, counts: Any = None) -> Any:
        """Weights for this step (and the GradNorm update of the next ones). L_t(0) is recorded per task
        at the first step where that task has labelled rows (`counts` > 0: the model's train step passes
        them); until then the task's loss ratio is taken as 1."""
        losses = ops.cast(task_losses, "float32")
        norms = ops.sqrt(ops.maximum(ops.diagonal(ops.cast(gramian, "float32")), 0.0))
        weights = ops.add(self.loss_weights, 0.0)  # a read now, before the assign below
        stored = ops.convert_to_tensor(self.initial_losses)
        recorded = ops.logical_and(self.steps > 0, stored > 0)  # initial_losses starts at 0: not recorded
        labelled = ops.ones_like(losses, dtype="bool") if counts is None else ops.cast(counts, "float32") > 0
        record = ops.logical_and(ops.logical_not(recorded), labelled)
        initial = ops.where(record, losses, ops.where(recorded, stored, ops.zeros_like(stored)))
        known = initial > 0
        ratios = ops.where(known, losses / ops.where(known, initial, ops.ones_like(initial)), ops.ones_like(losses))
        relative = ratios / ops.maximum(ops.mean(ratios), 1e-12)
        scaled_norms = weights * norms
        target = ops.mean(scaled_norms) * ops.power(relative, self.alpha)
        gradient = ops.sign(scaled_norms - target) * norms
        updated = ops.maximum(weights - self.learning_rate * gradient, 1e-6)
        self.loss_weights.assign(float(self.num_tasks) * updated / ops.sum(updated))
        self.initial_losses.assign(initial)
        self.steps.assign(self.steps + 1.0)
        return weights

    def gramian_weights(self, gramian: Any) -> Any:
        """GradNorm's task weights `[T]` from the Gramian `[T, T]` of the per-task gradients (see the class docstring)."""
        raise NotImplementedError("GradNorm needs the task losses too: the model calls aggregate(gramian, task_losses).")

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        return {**super().get_config(), "alpha": self.alpha, "learning_rate": self.learning_rate}
