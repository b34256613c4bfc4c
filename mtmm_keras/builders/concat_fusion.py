"""Concatenation fusion (the baseline): per-modality encoders → common size → concatenation → MLP → task heads."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtmm_keras import _checks
from mtmm_keras.builders import _common
from mtmm_keras.builders._keywords import checked_keywords
from mtmm_keras.layers import ConcatFusion
from mtmm_keras.models import MultiTaskModel
from mtmm_keras.tasks import Task

FUSION_LAYER = "concat_fusion"


@checked_keywords()
def concat_fusion(
    encoders: dict[str, keras.Model],
    tasks: Sequence[Task],
    *,
    fusion_dim: int = 64,
    hidden_units: Sequence[int] = (64,),
    projection_activation: str | None = "tanh",
    hidden_activation: str = "relu",
    dropout: float = 0.0,
    modality_dropout: float = 0.0,
    modality_mask: bool = False,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    weighting: Any = "static",
    compile: bool = True,
    name: str = "concat_fusion",
    **compile_kwargs: Any,
) -> MultiTaskModel:
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
    tasks, fusion_dim, hidden_units, dropout = _common.check_fusion_arguments(
        encoders, tasks, fusion_dim, hidden_units, dropout)
    _checks.activation(projection_activation, "projection_activation")
    # 1. per-modality encoders, projected to a common size
    inputs, features, mask = _common.fusion_inputs(encoders, "concat_fusion", modality_dropout, modality_mask)
    projected = [
        keras.layers.Dense(fusion_dim, activation=projection_activation, name=f"{m}_projection")(features[m])
        for m in features
    ]
    # 2. concatenation (missing modalities zeroed, mask appended)
    fused = ConcatFusion(name=FUSION_LAYER)(projected, modality_mask=mask)
    # 3. prediction layers
    return _common.fused_task_model(inputs, fused, tasks, hidden_units, dropout, hidden_activation, optimizer=optimizer,
                                    learning_rate=learning_rate, weighting=weighting, compile=compile, name=name,
                                    compile_kwargs=compile_kwargs)
