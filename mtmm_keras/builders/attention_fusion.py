"""Attention fusion: per-modality encoders → common size → learned attention over modalities → task heads."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtmm_keras import _checks
from mtmm_keras.builders import _common
from mtmm_keras.builders._keywords import checked_keywords
from mtmm_keras.layers import AttentionFusion
from mtmm_keras.models import MultiTaskModel
from mtmm_keras.tasks import Task

ATTENTION_OUTPUT = "attention"
FUSION_LAYER = "attention_fusion"


@checked_keywords()
def attention_fusion(
    encoders: dict[str, keras.Model],
    tasks: Sequence[Task],
    *,
    fusion_dim: int = 64,
    hidden_units: Sequence[int] = (),
    projection_activation: str | None = "tanh",
    attention_units: int | None = None,
    hidden_activation: str = "relu",
    dropout: float = 0.0,
    modality_dropout: float = 0.0,
    modality_mask: bool = False,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    weighting: Any = "static",
    compile: bool = True,
    name: str = "attention_fusion",
    **compile_kwargs: Any,
) -> MultiTaskModel:
    """Build a multi-modal model: inputs named after the modalities, outputs `{task.name: head}`.

    Each encoder's features are projected to `fusion_dim`; `AttentionFusion` scores them
    (e = vᵀ tanh(W h + b)), normalises the scores over modalities (α = softmax(e)) and sums
    h = Σ α_m h_m; optional `hidden_units` Dense layers and the task heads follow.
    The attention weights α (`[batch, modalities]`, in `encoders` order) are read out with
    `attention_model(model)`, or `with_attention_output(model)` for predictions plus α in one call.
    `weighting` (keyword): how the task losses combine, a name from `mk.weighting.names()` or an
    `mk.weighting.Weighting` (default "static": λ_t); see `MultiTaskModel`.
    Missing modalities: with `modality_dropout=p > 0` or `modality_mask=True` the model has an extra input
    `modality_mask` (`[batch, M]`, 1 = present, columns in `encoders` order; `fit`/`predict` fill ones when
    it is not given); a missing modality gets α = 0 and cannot change the outputs, and while training each
    modality of each row is dropped with probability p (never all of them; `mk.layers.ModalityDropout`).
    A row with every modality missing fuses to the zero vector (the heads see only their biases).
    """
    tasks, fusion_dim, hidden_units, dropout = _common.check_fusion_arguments(
        encoders, tasks, fusion_dim, hidden_units, dropout, reserved_outputs=(ATTENTION_OUTPUT,))
    _checks.activation(projection_activation, "projection_activation")
    # 1. per-modality encoders, projected to a common size
    inputs, features, mask = _common.fusion_inputs(encoders, "attention_fusion", modality_dropout, modality_mask)
    projected = [
        keras.layers.Dense(fusion_dim, activation=projection_activation, name=f"{m}_projection")(features[m])
        for m in features
    ]
    # 2. attention over modalities and the weighted sum
    fused, _ = AttentionFusion(attention_units=attention_units, name=FUSION_LAYER)(
        projected, modality_mask=mask, return_attention_scores=True
    )
    # 3. prediction layers
    return _common.fused_task_model(inputs, fused, tasks, hidden_units, dropout, hidden_activation, optimizer=optimizer,
                                    learning_rate=learning_rate, weighting=weighting, compile=compile, name=name,
                                    compile_kwargs=compile_kwargs)
