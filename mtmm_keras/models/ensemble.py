"""`average_ensemble(members)`: several trained multi-task models as one model whose outputs are their means.

A seed ensemble (the same recipe trained from K seeds) removes most of the seed-to-seed scatter of a small
model's test metrics and usually adds a little on top; as one Keras model it saves, loads and exports like any
other (each member is a nested model; every output is a `keras.layers.Average` named after the task)."""

from __future__ import annotations

from typing import Sequence

import keras

from mtmm_keras.models.multi_task_model import MultiTaskModel


def _signature(model: keras.Model) -> list[tuple[str, tuple, str]]:
    return [(t.name.split(":")[0], tuple(t.shape[1:]), str(t.dtype)) for t in model.inputs]


def average_ensemble(members: Sequence[keras.Model], *, name: str = "ensemble") -> MultiTaskModel:
    """One (uncompiled) `MultiTaskModel` with the members' inputs whose output `task` is the mean of the members'
    `task` outputs: logits for logit heads (a mean of logits), probabilities for softmax heads, values for
    regression heads. The members must take the same inputs (names, shapes, dtypes) and give the same outputs.
    The ensemble holds uncompiled copies of them named `{name}_member_{i}` (the members themselves are left as they
    are): a saved ensemble carries no member's optimizer state, only weights. Its tasks are the first member's
    (`MultiTaskModel.task_configs`); compile it to fit or evaluate it."""
    members = list(members)
    if len(members) < 2:
        raise ValueError(f"`members` needs at least 2 models to average, got {len(members)}.")
    for i, member in enumerate(members):
        if not isinstance(member, keras.Model) or not member.inputs:
            raise TypeError(f"`members[{i}]` must be a built functional keras.Model, got {type(member).__name__}.")
    first_inputs, first_outputs = _signature(members[0]), list(members[0].output_names)
    for i, member in enumerate(members[1:], start=1):
        if _signature(member) != first_inputs:
            raise ValueError(f"`members[{i}]` takes the inputs {_signature(member)}, `members[0]` {first_inputs}: "
                             "an ensemble's members must take the same inputs.")
        if list(member.output_names) != first_outputs:
            raise ValueError(f"`members[{i}]` gives the outputs {list(member.output_names)}, `members[0]` "
                             f"{first_outputs}: an ensemble's members must give the same outputs.")
    inputs = [keras.Input(shape=shape, dtype=dtype, name=input_name) for input_name, shape, dtype in first_inputs]
    called = []
    for i, member in enumerate(members):
        copy = _uncompiled_copy(member, f"{name}_member_{i}")
        out = copy(inputs[0] if len(inputs) == 1 else inputs)
        if not isinstance(out, dict):  # a functional model with list (or single) outputs, in output_names order
            out = dict(zip(first_outputs, out if isinstance(out, (list, tuple)) else [out]))
        called.append(out)
    outputs = {task: keras.layers.Average(name=task)([out[task] for out in called]) for task in first_outputs}
    model = MultiTaskModel(inputs[0] if len(inputs) == 1 else inputs, outputs, name=name)
    configs = getattr(members[0], "task_configs", ())
    if configs:
        # imported here, not at the top: mtmm_keras.tasks imports keras, whose import hook registers this package's
        # classes (this module among them) while mtmm_keras.tasks is still half-initialised
        from mtmm_keras.tasks import Task

        model.set_tasks([Task.from_config(config) for config in configs])
    return model


def _uncompiled_copy(member: keras.Model, name: str) -> keras.Model:
    """`member` rebuilt from its config (no compile state, so no optimizer) with its weights, named `name`."""
    config = member.get_config()
    config["name"] = name
    copy = type(member).from_config(config)
    copy.set_weights(member.get_weights())
    return copy

