"""Soft parameter sharing: one tower per task, tied by α·Ω with Ω = Σ_t Σ_k ‖θ_t − θ_k‖²."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras

from mtmm_keras import _checks
from mtmm_keras.builders import _common
from mtmm_keras.builders._keywords import checked_keywords
from mtmm_keras.builders.wide import resolve_wide, task_head
from mtmm_keras.layers import SplitTowers, StackedDense
from mtmm_keras.models import MultiTaskModel
from mtmm_keras.regularizers import ParameterDistance
from mtmm_keras.tasks import Task, validate_tasks


@checked_keywords()
def soft_sharing(
    inputs: Any,
    tasks: Sequence[Task],
    *,
    tower_units: Sequence[int] = (128, 64),
    alpha: float = 1e-3,
    activation: str = "relu",
    dropout: float = 0.0,
    wide: Mapping[str, int | None] | None = None,
    wide_l2: float = 0.0,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    weighting: Any = "static",
    compile: bool = True,
    name: str = "soft_sharing",
    **compile_kwargs: Any,
) -> MultiTaskModel:
    """Build a soft-sharing multi-task model: each task has its own MLP tower and head.

    The towers' matching kernels and biases are stacked (`mk.layers.StackedDense`, one batched
    matmul for all towers) and carry `mk.regularizers.ParameterDistance(alpha)`, so the training
    loss is Σ_t λ_t·L_t + α·Σ_t Σ_k ‖θ_t − θ_k‖² (ordered pairs, no normalisation).
    `weighting` (keyword): how the task losses combine, a name from `mk.weighting.names()` or an
    `mk.weighting.Weighting` (default "static": λ_t); see `MultiTaskModel`.
    `wide` ({model input name: vocabulary size of its token ids, or None for float features}) adds a linear path
    from each named input straight to every task's head (Wide & Deep; `wide_l2` penalises it); see
    `mk.layers.WideDeepHead`.
    """
    tasks = validate_tasks(tasks)
    tower_units = _checks.units_tuple(tower_units, "tower_units", allow_empty=False)
    alpha = _checks.non_negative_float(alpha, "alpha")
    dropout = _checks.dropout_rate(dropout, "dropout")
    _checks.activation(activation, "activation")
    model_inputs, features = _common.resolve_inputs(inputs)
    wide_paths = resolve_wide(model_inputs, wide, wide_l2)
    # 1. one tower per task (stacked on a tower axis) ...
    # 2. ... whose matching weights are tied by Ω
    x = features
    for level, units in enumerate(tower_units):
        x = StackedDense(
            len(tasks),
            units,
            activation=activation,
            kernel_regularizer=ParameterDistance(alpha),
            bias_regularizer=ParameterDistance(alpha),
            name=f"towers_dense{level + 1}",
        )(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"towers_dropout{level + 1}")(x)
    tower_outputs = SplitTowers(name="split_towers")(x)
    if len(tasks) == 1:
        tower_outputs = [tower_outputs[0]] if isinstance(tower_outputs, list) else [tower_outputs]
    # 3. each task's head on its own tower
    outputs = {task.name: task_head(task, tower, wide_paths) for task, tower in zip(tasks, tower_outputs)}
    model = MultiTaskModel(model_inputs, outputs, name=name)
    model.set_tasks(tasks)
    # 4. Σ λ_t L_t from compile; α·Ω arrives through the layers' regularization losses
    if compile:
        _common.compile_for_tasks(model, tasks, optimizer, learning_rate, weighting=weighting, **compile_kwargs)
    return model
