"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task Learning with
Attention", eq. 7): a task whose loss falls slowly gets more weight in the next epoch."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.weighting._base import Weighting, register


def dwa_weights(previous: Sequence[float], before: Sequence[float], temperature: float) -> np.ndarray:
    """w_t = T·exp(r_t/τ) / Σ_k exp(r_k/τ), r_t = L_t(e−1) / L_t(e−2): the paper's formula in NumPy."""
    ratios = np.asarray(previous, dtype="float64") / np.asarray(before, dtype="float64")
    scaled = np.exp(ratios / temperature - np.max(ratios / temperature))
    return len(ratios) * scaled / scaled.sum()


@keras.saving.register_keras_serializable(package="mtmm")
@register("dwa")
class DWA(Weighting):
    """Weights w_t = T·softmax(r/τ)_t from the ratio r_t = L_t(e−1)/L_t(e−2) of each task's mean
    training loss over the two previous epochs; w_t = 1 for the first two epochs (as in the paper).

    The epoch losses come from `fit` (each task's unweighted mean loss, `history["<task>_loss"]`)
    through `on_epoch_end`; they live in non-trainable variables, so a saved and reloaded model
    continues with the same weights. τ = `temperature` (the paper's T = 2).
    """

    def __init__(self, temperature: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = _checks.positive_float(temperature, "temperature")

    def build_for_tasks(self, num_tasks: int) -> None:
        """Create DWA's state for `num_tasks` tasks (called once the model's tasks are known)."""
        if getattr(self, "loss_history", None) is None:
            # Row 0: the losses of epoch e−2, row 1: those of epoch e−1.
            self.loss_history = self.add_weight(shape=(2, int(num_tasks)), name="loss_history", trainable=False,
                                                initializer="ones")
            self.epochs_seen = self.add_weight(shape=(), name="epochs_seen", trainable=False, initializer="zeros")
        super().build_for_tasks(num_tasks)

    def current_weights(self) -> Any:
        """This epoch's task weights: T · softmax(r / τ) from the last two epochs' losses (ones until two are seen)."""
        history = ops.cast(self.loss_history, "float32")
        ratios = history[1] / ops.maximum(history[0], 1e-12)
        weights = float(self.num_tasks) * ops.softmax(ratios / self.temperature)
        return ops.where(self.epochs_seen >= 2, weights, ops.ones_like(weights))

    def combine(self, task_losses: Any, training: bool = True) -> tuple[Any, Any]:
        """Loss level: (scalar loss to differentiate, weights `[T]` used) from the per-task losses `[T]`, by DWA's rule."""
        weights = ops.cast(self.current_weights(), task_losses.dtype)
        return ops.sum(weights * task_losses), weights

    def on_epoch_end(self, epoch_task_losses: Sequence[float]) -> None:
        """Record the epoch's mean per-task losses; the next epoch's weights come from the last two."""
        losses = np.asarray(epoch_task_losses, dtype="float32").reshape(-1)
        if losses.shape != (self.num_tasks,) or not np.all(np.isfinite(losses)):
            return  # an epoch without every task's loss (or a NaN one) does not move the weights
        previous = np.asarray(keras.ops.convert_to_numpy(self.loss_history))[1]
        self.loss_history.assign(np.stack([previous, losses]))
        self.epochs_seen.assign(float(keras.ops.convert_to_numpy(self.epochs_seen)) + 1.0)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        return {**super().get_config(), "temperature": self.temperature}
