"""CGC and PLE (Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model
for Personalized Recommendations", RecSys 2020): task-specific plus shared experts, in stacked levels.

A Customized Gate Control (CGC) level gives every task its own experts next to the shared ones; task t's
gate weighs [t's experts, shared experts]. PLE stacks `num_levels` such levels; in every level but the
last, the shared experts also get a gate of their own over all experts [task 1's, ..., task T's, shared],
whose mixture is what the next level's shared experts read. CGC is PLE with one level.
"""

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

SHARED = "shared"


@checked_keywords()
def ple(
    inputs: Any,
    tasks: Sequence[Task],
    *,
    num_levels: int = 2,
    shared_experts: int = 2,
    task_experts: int = 2,
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
    name: str = "ple",
    weighting: Any = "static",
    **compile_kwargs: Any,
) -> MultiTaskModel:
    """Build (and by default compile) a PLE model with outputs `{task.name: head}`.

    Each level has `task_experts` experts per task and `shared_experts` shared ones, each an MLP of
    `expert_units`. `mk.builders.gate_model(model)` reads the gates: `{task: [batch, task_experts +
    shared_experts]}` for the last level (experts ordered [the task's own, shared]), and for each earlier
    level l `"level<l>_<task>"` likewise plus `"level<l>_shared"` over all `T·task_experts + shared_experts`
    experts ([task 1's, ..., task T's, shared]). `gate="dselect_k"` uses DSelect-k gates (≤ `gate_k`
    experts each). `dropout` follows every expert bank and tower layer; extra keyword arguments go to
    `model.compile`.
    `wide` ({model input name: vocabulary size of its token ids, or None for float features}) adds a linear path
    from each named input straight to every task's head (Wide & Deep; `wide_l2` penalises it); see
    `mk.layers.WideDeepHead`.
    """
    tasks = validate_tasks(tasks)
    num_levels = _checks.positive_int(num_levels, "num_levels")
    shared_experts = _checks.positive_int(shared_experts, "shared_experts")
    task_experts = _checks.positive_int(task_experts, "task_experts")
    expert_units = _checks.units_tuple(expert_units, "expert_units", allow_empty=False)
    gate_units = _checks.units_tuple(gate_units, "gate_units")
    tower_units = _checks.units_tuple(tower_units, "tower_units")
    check_gate(gate, gate_k, task_experts + shared_experts)
    dropout = _checks.dropout_rate(dropout, "dropout")
    _checks.activation(activation, "activation")
    _common.check_reserved_names(tasks, {SHARED}, "PLE's shared experts and gates (named 'shared')")
    model_inputs, features = _common.resolve_inputs(inputs)
    wide_paths = resolve_wide(model_inputs, wide, wide_l2)

    def expert_bank(count: int, x: Any, prefix: str) -> Any:
        bank = Experts(count, expert_units, activation=activation, name=f"{prefix}_experts")(x)
        return keras.layers.Dropout(dropout, name=f"{prefix}_experts_dropout")(bank) if dropout else bank

    def gated(pool: Any, x: Any, count: int, gate_name: str, prefix: str) -> Any:
        weights = make_gate(gate, count, gate_units, gate_k, name=gate_name)(x)
        return MixExperts(name=f"{prefix}_mix")([pool, weights])

    task_inputs = {task.name: features for task in tasks}
    shared_input = features
    for level in range(1, num_levels + 1):
        last = level == num_levels
        # 1. this level's experts: `task_experts` per task (reading that task's input) and the shared ones
        own = {t.name: expert_bank(task_experts, task_inputs[t.name], f"level{level}_{t.name}") for t in tasks}
        shared = expert_bank(shared_experts, shared_input, f"level{level}_{SHARED}")
        # 2. each task's gate over [its own experts, the shared experts] mixes them into its next input
        for t in tasks:
            pool = keras.layers.Concatenate(axis=1, name=f"level{level}_{t.name}_pool")([own[t.name], shared])
            gate_name = f"{GATE_PREFIX}{t.name}" if last else f"level{level}_{GATE_PREFIX}{t.name}"
            task_inputs[t.name] = gated(pool, task_inputs[t.name], task_experts + shared_experts, gate_name,
                                        f"level{level}_{t.name}")
        # 3. below the last level, the shared experts' own gate over every expert of the level
        if not last:
            pool = keras.layers.Concatenate(axis=1, name=f"level{level}_{SHARED}_pool")([*own.values(), shared])
            shared_input = gated(pool, shared_input, len(tasks) * task_experts + shared_experts,
                                 f"level{level}_{GATE_PREFIX}{SHARED}", f"level{level}_{SHARED}")
    # 4. one tower and head per task on its last-level mixture
    outputs = {}
    for t in tasks:
        tower = _common.dense_stack(task_inputs[t.name], tower_units, activation, dropout, prefix=f"{t.name}_tower")
        outputs[t.name] = task_head(t, tower, wide_paths)
    model = MultiTaskModel(model_inputs, outputs, name=name)
    model.set_tasks(tasks)
    # 5. Σ_t λ_t L_t, optimised jointly
    if compile:
        _common.compile_for_tasks(model, tasks, optimizer, learning_rate, weighting=weighting, **compile_kwargs)
    return model


@checked_keywords(forwards_to=ple)
def cgc(
    inputs: Any,
    tasks: Sequence[Task],
    *,
    shared_experts: int = 2,
    task_experts: int = 2,
    expert_units: Sequence[int] = (64,),
    gate_units: Sequence[int] = (),
    tower_units: Sequence[int] = (32,),
    name: str = "cgc",
    **kwargs: Any,
) -> MultiTaskModel:
    """Customized Gate Control (Tang et al., RecSys 2020): `ple` with one extraction level.

    Task t's gate weighs [t's `task_experts` experts, the `shared_experts` shared ones];
    `mk.builders.gate_model(model)` returns `{task: [batch, task_experts + shared_experts]}`. Keyword
    arguments (`gate`, `activation`, `dropout`, `optimizer`, `weighting`, compile options, ...) as for `ple`.
    """
    return ple(inputs, tasks, num_levels=1, shared_experts=shared_experts, task_experts=task_experts,
               expert_units=expert_units, gate_units=gate_units, tower_units=tower_units, name=name, **kwargs)
