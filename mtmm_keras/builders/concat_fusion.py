"""Concatenation fusion (the baseline): per-modality encoders → common size → concatenation → MLP → task heads."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtmm_keras import _checks
from mtmm_keras.builders import _common
from mtmm_keras.layers import ConcatFusion
from mtmm_keras.models import MultiTaskModel
from mtmm_keras.tasks import Task, validate_tasks

FUSION_LAYER = "concat_fusion"


def concat_fusion(
    encoders: dict[str, keras.Model],
    tasks: Sequence[Task],
    fusion_dim: int = 64,
    *,
    hidden_units: Sequence[int] = (64,),
    projection_activation: str | None = "tanh",
    dropout: float = 0.0,
    modality_dropout: float = 0.0,
    modality_mask: bool = False,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    weighting: Any = "static",
    compile: bool = True,
    name: str = "concat_fusion",
    **compile_kwargs: Any,
) -> keras.Model:
    """Build a late-fusion model: inputs named after the modalities, outputs `{task.name: head}`.

    1. each encoder's features are projected to `fusion_dim` (`<modality>_projection`);
    2. `ConcatFusion` concatenates them, h = [h_1, …, h_M] (`[batch, M · fusion_dim]`);
    3. the `hidden_units` ReLU MLP (default one layer of 64) and the task heads follow.
    Missing modalities: with `modality_dropout=p > 0` or `modality_mask=True` the model has an extra input
    `modality_mask` (`[batch, M]`, 1 = present, columns in `encoders` order; `fit`/`predict` fill ones when it
    is not given). A missing modality's projection is replaced by zeros and the 0/1 mask is appended to h
    (`[batch, M · fusion_dim + M]`) so the MLP knows which are missing; while training each modality of each
    row is dropped with probability p (never all of them). A row with every modality missing is the zero
    vector. Concatenation has no per-modality weights to read (`fusion_weights` refuses it).
    `weighting`: how the task losses combine (`mk.weighting.names()`), see `MultiTaskModel`.
    """
    tasks = validate_tasks(tasks)
    fusion_dim = _checks.positive_int(fusion_dim, "fusion_dim")
    hidden_units = _checks.units_tuple(hidden_units, "hidden_units")
    dropout = _checks.dropout_rate(dropout, "dropout")
    reserved = set(encoders) if isinstance(encoders, dict) else set()
    _common.check_reserved_names(tasks, reserved, "modality names")
    _checks.activation(projection_activation, "projection_activation")
    # 1. per-modality encoders, projected to a common size
    inputs, features = _common.modality_features(encoders, min_modalities=2, builder="concat_fusion")
    mask_input, mask = _common.modality_mask_input(list(features), modality_dropout, modality_mask)
    if mask_input is not None:
        inputs[_common.MODALITY_MASK] = mask_input
    projected = [
        keras.layers.Dense(fusion_dim, activation=projection_activation, name=f"{m}_projection")(features[m])
        for m in features
    ]
    # 2. concatenation (missing modalities zeroed, mask appended)
    fused = ConcatFusion(name=FUSION_LAYER)(projected, modality_mask=mask)
    # 3. prediction layers
    x = _common.dense_stack(fused, hidden_units, "relu", dropout, prefix="fused")
    outputs = {task.name: task.build_head(x) for task in tasks}
    model = MultiTaskModel(inputs, outputs, name=name)
    model.set_tasks(tasks)
    if compile:
        _common.compile_for_tasks(model, tasks, optimizer, learning_rate, weighting=weighting, **compile_kwargs)
    return model
