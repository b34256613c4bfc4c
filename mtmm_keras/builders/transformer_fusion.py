"""Transformer fusion: per-modality encoders → tokens of a common size → Transformer blocks across modalities
(or through shared bottleneck tokens, Nagrani et al. 2021) → masked mean pool → task heads."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtmm_keras.builders import _common
from mtmm_keras.builders._keywords import checked_keywords
from mtmm_keras.layers import TransformerFusion
from mtmm_keras.models import MultiTaskModel
from mtmm_keras.tasks import Task

FUSION_LAYER = "transformer_fusion"


@checked_keywords()
def transformer_fusion(
    encoders: dict[str, keras.Model],
    tasks: Sequence[Task],
    *,
    fusion_dim: int = 64,
    num_blocks: int = 1,
    num_heads: int = 2,
    ffn_units: int | None = None,
    bottleneck_tokens: int = 0,
    hidden_units: Sequence[int] = (),
    hidden_activation: str = "relu",
    dropout: float = 0.0,
    modality_dropout: float = 0.0,
    modality_mask: bool = False,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    weighting: Any = "static",
    compile: bool = True,
    name: str = "transformer_fusion",
    **compile_kwargs: Any,
) -> MultiTaskModel:
    """Build a Transformer fusion model: inputs named after the modalities, outputs `{task.name: head}`.

    1. tokens: an encoder that outputs a vector `[batch, d]` gives one token, one that outputs a sequence
       `[batch, T, d]` gives T tokens (a feature map `[batch, H, W, C]` gives H·W); each is projected to
       `fusion_dim` (`<modality>_projection`);
    2. `TransformerFusion`: learned modality (and position) embeddings, `num_blocks` pre-norm blocks of
       `keras.layers.MultiHeadAttention(num_heads)` + FFN(`ffn_units`, default 2·fusion_dim) over all tokens,
       a final LayerNorm and the mean over tokens; with `bottleneck_tokens=k > 0` the modalities attend only
       within themselves plus k shared learned tokens, whose update is the mean over modalities (attention
       bottlenecks, Nagrani et al. 2021);
    3. optional `hidden_units` ReLU layers and the task heads.
    The attention maps are read with `mk.builders.fusion_weights(model)`.
    Missing modalities: with `modality_dropout=p > 0` or `modality_mask=True` the model has an extra input
    `modality_mask` (`[batch, M]`, 1 = present, columns in `encoders` order; `fit`/`predict` fill ones when it
    is not given); a missing modality's tokens are zeroed, masked as attention keys (left out of the
    bottleneck mean) and left out of the pooling, so they cannot change the outputs; while training each
    modality of each row is dropped with probability p (never all of them). A row with every modality
    missing pools to the zero vector. `dropout` applies in the blocks and after the hidden layers.
    `weighting`: how the task losses combine (`mk.weighting.names()`), see `MultiTaskModel`.
    """
    tasks, fusion_dim, hidden_units, dropout = _common.check_fusion_arguments(
        encoders, tasks, fusion_dim, hidden_units, dropout)
    fusion = TransformerFusion(num_blocks=num_blocks, num_heads=num_heads, ffn_units=ffn_units, dropout=dropout,
                               bottleneck_tokens=bottleneck_tokens, name=FUSION_LAYER)  # checks its arguments
    # 1. per-modality encoders; their outputs as token sequences of a common size
    inputs, features, mask = _common.fusion_inputs(encoders, "transformer_fusion", modality_dropout, modality_mask, flatten_features=False)
    tokens = []
    for modality, feature in features.items():
        shape = tuple(feature.shape[1:])
        if any(d is None for d in shape):
            raise ValueError(
                f"transformer_fusion needs a known output shape from `encoders[{modality!r}]`, got "
                f"{(None, *shape)}: every dimension but the batch must be fixed."
            )
        if len(shape) == 1:
            feature = keras.layers.Reshape((1, shape[0]), name=f"{modality}_token")(feature)
        elif len(shape) > 2:
            feature = keras.layers.Reshape((-1, shape[-1]), name=f"{modality}_tokens")(feature)
        tokens.append(keras.layers.Dense(fusion_dim, name=f"{modality}_projection")(feature))
    # 2. attention across modalities (or through the bottleneck tokens), masked mean pool
    fused, _ = fusion(tokens, modality_mask=mask, return_attention_scores=True)
    # 3. prediction layers
    return _common.fused_task_model(inputs, fused, tasks, hidden_units, dropout, hidden_activation, optimizer=optimizer,
                                    learning_rate=learning_rate, weighting=weighting, compile=compile, name=name,
                                    compile_kwargs=compile_kwargs)
