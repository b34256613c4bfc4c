"""PCGrad: project each task's gradient off the gradients it conflicts with, in random order, and sum.

Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020 (Algorithm 1); expressed on the
Gramian as in TorchJD 0.18's `PCGrad` / `PCGradWeighting`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras.weighting import _gramian
from mtmm_keras.weighting._base import Weighting, register


def pcgrad_weights(gramian: Any, permutations: Any) -> Any:
    """PCGrad's weights `[T]` given, for each task i, the order `permutations[i]` `[T]` in which it
    visits the others (entries equal to i are skipped). Deterministic; `PCGrad` draws the orders."""
    gramian = ops.convert_to_tensor(gramian)
    t = _gramian.num_tasks_of(gramian)
    dtype = gramian.dtype
    permutations = ops.cast(ops.convert_to_tensor(permutations), "int32")
    diagonal = ops.diagonal(gramian)
    current = ops.eye(t, dtype=dtype)  # row i: weights of task i's projected gradient g_i^PC
    own = ops.arange(t, dtype="int32")
    for k in range(t):  # every task visits T indices (one is itself), in parallel over tasks
        j = permutations[:, k]  # [T]
        rows = ops.take(gramian, j, axis=0)  # G[j_i]
        inner = ops.sum(rows * current, axis=1)  # <g_i^PC, g_{j_i}>
        g_jj = ops.take(diagonal, j)
        conflict = ops.logical_and(inner < 0.0, j != own)
        delta = ops.where(conflict, -inner / ops.where(conflict, g_jj, ops.ones_like(g_jj)), 0.0)
        current = current + ops.expand_dims(delta, 1) * ops.one_hot(j, t, dtype=dtype)
    return ops.sum(current, axis=0)


@keras.saving.register_keras_serializable(package="mtmm")
@register("pcgrad")
class PCGrad(Weighting):
    """Gradient surgery: each gᵢ loses its component along every gⱼ it has a negative inner product
    with (visiting the others in a fresh random order per task and step); the results are summed.

    Args:
        seed: seed of the random visiting orders (TorchJD draws them with `torch.randperm`; this
            argument is the Keras way to make a run repeatable).
    """

    level = "gradient"

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"`seed` must be an int or None, got {seed!r}.")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def gramian_weights(self, gramian: Any) -> Any:
        """PCGrad's task weights `[T]` from the Gramian `[T, T]` of the per-task gradients (see the class docstring)."""
        gramian = ops.convert_to_tensor(gramian)
        t = _gramian.num_tasks_of(gramian)
        noise = keras.random.uniform((t, t), seed=self.seed_generator)
        return pcgrad_weights(gramian, ops.argsort(noise, axis=1))

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(seed=self.seed)
        return config
