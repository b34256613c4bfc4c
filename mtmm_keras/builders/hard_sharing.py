"""Hard parameter sharing: one shared trunk, one head per task, L = Σ_t λ_t · mean L_t."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mtmm_keras import _checks
from mtmm_keras.builders import _common
from mtmm_keras.builders._keywords import checked_keywords
from mtmm_keras.builders.wide import resolve_wide, task_head
from mtmm_keras.models import MultiTaskModel
from mtmm_keras.tasks import Task, validate_tasks


@checked_keywords()
def hard_sharing(
    inputs: Any,
    tasks: Sequence[Task],
    *,
    trunk_units: Sequence[int] = (128, 64),
    activation: str = "relu",
    dropout: float = 0.0,
    wide: Mapping[str, int | None] | None = None,
    wide_l2: float = 0.0,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    weighting: Any = "static",
    compile: bool = True,
    name: str = "hard_sharing",
    **compile_kwargs: Any,
) -> MultiTaskModel:
    """Build (and by default compile) a hard-sharing multi-task model with outputs `{task.name: head}`.

    `inputs` is an input shape such as `(100,)`, a `keras.Input`, or an encoder `keras.Model` whose
    output the trunk sits on. Extra keyword arguments go to `model.compile` (e.g. `jit_compile`).
    `weighting` (keyword): how the task losses combine, a name from `mk.weighting.names()` or an
    `mk.weighting.Weighting` (default "static": λ_t); see `MultiTaskModel`.
    `wide` ({model input name: vocabulary size of its token ids, or None for float features}) adds a linear path
    from each named input straight to every task's head (Wide & Deep; `wide_l2` penalises it); see
    `mk.layers.WideDeepHead`.
    """
    tasks = validate_tasks(tasks)
    trunk_units = _checks.units_tuple(trunk_units, "trunk_units")
    dropout = _checks.dropout_rate(dropout, "dropout")
    _checks.activation(activation, "activation")
    # 1. the shared trunk
    model_inputs, features = _common.resolve_inputs(inputs)
    wide_paths = resolve_wide(model_inputs, wide, wide_l2)
    shared = _common.dense_stack(features, trunk_units, activation, dropout, prefix="trunk")
    # 2. one head per task
    outputs = {task.name: task_head(task, shared, wide_paths) for task in tasks}
    model = MultiTaskModel(model_inputs, outputs, name=name)
    model.set_tasks(tasks)
    # 3.–4. every task's loss, weighted by λ_t, summed and optimised jointly
    if compile:
        _common.compile_for_tasks(model, tasks, optimizer, learning_rate, weighting=weighting, **compile_kwargs)
    return model
