"""Gated fusion (Gated Multimodal Unit, Arevalo et al. 2017): per-modality encoders → GMU → task heads."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtmm_keras.builders import _common
from mtmm_keras.builders._keywords import checked_keywords
from mtmm_keras.layers import GatedFusion
from mtmm_keras.models import MultiTaskModel
from mtmm_keras.tasks import Task

FUSION_LAYER = "gated_fusion"


@checked_keywords()
def gated_fusion(
    encoders: dict[str, keras.Model],
    tasks: Sequence[Task],
    *,
    fusion_dim: int = 64,
    hidden_units: Sequence[int] = (),
    hidden_activation: str = "relu",
    dropout: float = 0.0,
    modality_dropout: float = 0.0,
    modality_mask: bool = False,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    weighting: Any = "static",
    compile: bool = True,
    name: str = "gated_fusion",
    **compile_kwargs: Any,
) -> MultiTaskModel:
    """Build a GMU fusion model: inputs named after the modalities, outputs `{task.name: head}`.

    1. each encoder gives its features x_m (any size);
    2. `GatedFusion(fusion_dim)`: h_m = tanh(W_m x_m + b_m), gates from all modalities at once,
       z = σ(W_z [x_1, x_2] + b_z) and h = z ⊙ h_1 + (1 − z) ⊙ h_2 for two modalities (the paper's GMU);
       for M > 2 one gate per modality and unit, z_m = softmax over modalities of (W_z [x_1..x_M] + b_z)_m,
       h = Σ_m z_m ⊙ h_m;
    3. optional `hidden_units` ReLU layers and the task heads.
    The gates z (`[batch, M, fusion_dim]`, in `encoders` order) are read with `mk.builders.fusion_weights(model)`.
    Missing modalities: with `modality_dropout=p > 0` or `modality_mask=True` the model has an extra input
    `modality_mask` (`[batch, M]`, 1 = present; `fit`/`predict` fill ones when it is not given); a missing
    modality's features are zeroed before the gates read them and its gate is closed (z_m = 0, the others
    renormalised), so it cannot change the outputs; while training each modality of each row is dropped with
    probability p (never all of them). A row with every modality missing fuses to the zero vector.
    `weighting`: how the task losses combine (`mk.weighting.names()`), see `MultiTaskModel`.
    """
    tasks, fusion_dim, hidden_units, dropout = _common.check_fusion_arguments(
        encoders, tasks, fusion_dim, hidden_units, dropout)
    # 1. per-modality encoders
    inputs, features, mask = _common.fusion_inputs(encoders, "gated_fusion", modality_dropout, modality_mask)
    # 2. the gated multimodal unit
    fused, _ = GatedFusion(fusion_dim, name=FUSION_LAYER)(list(features.values()), modality_mask=mask, return_gates=True)
    # 3. prediction layers
    return _common.fused_task_model(inputs, fused, tasks, hidden_units, dropout, hidden_activation, optimizer=optimizer,
                                    learning_rate=learning_rate, weighting=weighting, compile=compile, name=name,
                                    compile_kwargs=compile_kwargs)
