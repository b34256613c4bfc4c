"""Cross-stitch networks (Misra et al., "Cross-stitch Networks for Multi-task Learning", CVPR 2016):
one tower per task, and after every tower level a learnable linear mix of all towers' activations."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras

from mtmm_keras import _checks
from mtmm_keras.builders import _common
from mtmm_keras.builders._keywords import checked_keywords
from mtmm_keras.builders.wide import resolve_wide, task_head
from mtmm_keras.layers import CrossStitch, SplitTowers, StackedDense
from mtmm_keras.models import MultiTaskModel
from mtmm_keras.tasks import Task, validate_tasks


@checked_keywords()
def cross_stitch(
    inputs: Any,
    tasks: Sequence[Task],
    *,
    tower_units: Sequence[int] = (128, 64),
    self_weight: float = 0.9,
    activation: str = "relu",
    dropout: float = 0.0,
    wide: Mapping[str, int | None] | None = None,
    wide_l2: float = 0.0,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    compile: bool = True,
    name: str = "cross_stitch",
    weighting: Any = "static",
    **compile_kwargs: Any,
) -> MultiTaskModel:
    """Build (and by default compile) a cross-stitch model with outputs `{task.name: head}`.

    Each task has its own MLP tower (`tower_units`, stacked as `mk.layers.StackedDense`); after level l,
    `CrossStitch` replaces tower i's activations by Σ_j α^l_ij x_j. Each α^l starts at `self_weight` (0.9)
    on the diagonal and (1 − self_weight)/(T − 1) off it (0.1 for two tasks), so the towers start nearly
    independent and learn how much to share. `mk.builders.stitch_weights(model)` returns every α^l
    (layers "stitch1", "stitch2", ...). `dropout` follows every tower level.
    `wide` ({model input name: vocabulary size of its token ids, or None for float features}) adds a linear path
    from each named input straight to every task's head (Wide & Deep; `wide_l2` penalises it); see
    `mk.layers.WideDeepHead`.
    """
    tasks = validate_tasks(tasks)
    tower_units = _checks.units_tuple(tower_units, "tower_units", allow_empty=False)
    self_weight = _checks.float_in_range(self_weight, "self_weight", 0.0, 1.0)
    dropout = _checks.dropout_rate(dropout, "dropout")
    _checks.activation(activation, "activation")
    model_inputs, features = _common.resolve_inputs(inputs)
    wide_paths = resolve_wide(model_inputs, wide, wide_l2)
    x = features
    for level, units in enumerate(tower_units, start=1):
        # 1. level l of every task's tower (one batched matmul; tower t reads slice t after level 1)
        x = StackedDense(len(tasks), units, activation=activation, name=f"towers_dense{level}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"towers_dropout{level}")(x)
        # 2. the cross-stitch: each tower's next input is a learned linear mix of all towers
        x = CrossStitch(len(tasks), self_weight=self_weight, name=f"stitch{level}")(x)
    tower_outputs = SplitTowers(name="split_towers")(x)
    if not isinstance(tower_outputs, (list, tuple)):
        tower_outputs = [tower_outputs]
    # 3. each task's head on its own tower
    outputs = {task.name: task_head(task, tower, wide_paths) for task, tower in zip(tasks, tower_outputs)}
    model = MultiTaskModel(model_inputs, outputs, name=name)
    model.set_tasks(tasks)
    # 4. Σ_t λ_t L_t, optimised jointly (the stitches learn from every task's loss)
    if compile:
        _common.compile_for_tasks(model, tasks, optimizer, learning_rate, weighting=weighting, **compile_kwargs)
    return model
