"""MMoE, Multi-gate Mixture-of-Experts (Ma et al., "Modeling Task Relationships in Multi-task Learning
with Multi-gate Mixture-of-Experts", KDD 2018): shared experts, one softmax gate per task."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras

from mtmm_keras import _checks
from mtmm_keras.builders import _common
from mtmm_keras.builders._keywords import checked_keywords
from mtmm_keras.builders.wide import resolve_wide, task_head
from mtmm_keras.builders.gates import GATE_PREFIX, check_gate, make_gate
from mtmm_keras.layers import Experts, MixExperts
from mtmm_keras.models import MultiTaskModel
from mtmm_keras.tasks import Task, validate_tasks


@checked_keywords()
def mmoe(
    inputs: Any,
    tasks: Sequence[Task],
    *,
    num_experts: int = 4,
    expert_units: Sequence[int] = (64,),
    gate_units: Sequence[int] = (),
    tower_units: Sequence[int] = (32,),
    gate: str = "softmax",
    gate_k: int = 2,
    activation: str = "relu",
    dropout: float = 0.0,
    wide: Mapping[str, int | None] | None = None,
    wide_l2: float = 0.0,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    compile: bool = True,
    name: str = "mmoe",
    weighting: Any = "static",
    **compile_kwargs: Any,
) -> MultiTaskModel:
    """Build (and by default compile) an MMoE model with outputs `{task.name: head}`.

    `num_experts` MLPs (`expert_units`) read the shared features; task t's gate
    g_t(x) = softmax(W_t x) (an MLP first if `gate_units`) weighs them, f_t(x) = Σ_e g_t(x)_e · expert_e(x),
    and t's tower (`tower_units`) and head follow. `gate="dselect_k"` swaps in DSelect-k gates choosing at
    most `gate_k` experts (Hazimeh et al., NeurIPS 2021). `mk.builders.gate_model(model)` reads the gates:
    `{task: [batch, num_experts]}`. `inputs` is a shape tuple, a `keras.Input` or an encoder model;
    `dropout` follows the experts and each tower layer; extra keyword arguments go to `model.compile`.
    `wide` ({model input name: vocabulary size of its token ids, or None for float features}) adds a linear path
    from each named input straight to every task's head (Wide & Deep; `wide_l2` penalises it); see
    `mk.layers.WideDeepHead`.
    """
    tasks = validate_tasks(tasks)
    num_experts = _checks.positive_int(num_experts, "num_experts")
    expert_units = _checks.units_tuple(expert_units, "expert_units", allow_empty=False)
    gate_units = _checks.units_tuple(gate_units, "gate_units")
    tower_units = _checks.units_tuple(tower_units, "tower_units")
    check_gate(gate, gate_k, num_experts)
    dropout = _checks.dropout_rate(dropout, "dropout")
    _checks.activation(activation, "activation")
    _common.check_reserved_names(tasks, {"experts", "experts_dropout"}, "the MMoE layer names")
    model_inputs, features = _common.resolve_inputs(inputs)
    wide_paths = resolve_wide(model_inputs, wide, wide_l2)
    # 1. shared experts: E MLPs on the same features, stacked on an experts axis [batch, E, d]
    experts = Experts(num_experts, expert_units, activation=activation, name="experts")(features)
    if dropout:
        experts = keras.layers.Dropout(dropout, name="experts_dropout")(experts)
    outputs = {}
    for task in tasks:
        # 2. one gate per task: weights over the experts from the same features
        weights = make_gate(gate, num_experts, gate_units, gate_k, name=f"{GATE_PREFIX}{task.name}")(features)
        # 3. the task's mixture of experts, Σ_e g_t(x)_e · expert_e(x)
        mixed = MixExperts(name=f"mix_{task.name}")([experts, weights])
        # 4. the task's tower and head
        tower = _common.dense_stack(mixed, tower_units, activation, dropout, prefix=f"{task.name}_tower")
        outputs[task.name] = task_head(task, tower, wide_paths)
    model = MultiTaskModel(model_inputs, outputs, name=name)
    model.set_tasks(tasks)
    # 5. Σ_t λ_t L_t, optimised jointly
    if compile:
        _common.compile_for_tasks(model, tasks, optimizer, learning_rate, weighting=weighting, **compile_kwargs)
    return model
