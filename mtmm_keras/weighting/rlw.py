"""Random Loss Weighting (Lin, Ye, Xu, Tsang & Zhang, TMLR 2022, "Reasonable Effectiveness of Random
Weighting: A Litmus Test for Multi-Task Learning"): fresh random weights at every training step."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras.weighting._base import Weighting, register


@keras.saving.register_keras_serializable(package="mtmm")
@register("rlw")
class RLW(Weighting):
    """w = softmax(ε), ε ~ N(0, I_T), drawn anew at every training step (the paper's default
    normal-softmax variant; the weights sum to 1). Evaluation uses their mean, 1/T each, so validation
    losses do not jitter. `seed` makes the draws reproducible; the generator state is saved.
    """

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"`seed` must be an int or None, got {type(seed).__name__} {seed!r}.")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def combine(self, task_losses: Any, training: bool = True) -> tuple[Any, Any]:
        """Loss level: (scalar loss to differentiate, weights `[T]` used) from the per-task losses `[T]`, by RLW's rule."""
        count = int(task_losses.shape[0])
        if training:
            weights = ops.softmax(keras.random.normal((count,), seed=self.seed_generator))
        else:
            weights = ops.full((count,), 1.0 / count)
        weights = ops.cast(weights, task_losses.dtype)
        return ops.sum(weights * task_losses), weights

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        return {**super().get_config(), "seed": self.seed}
