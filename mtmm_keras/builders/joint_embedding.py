"""Joint embedding: one encoder per modality into a shared space, trained with a cross-modal loss."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtmm_keras import _checks, distribute, losses
from mtmm_keras.builders import _common
from mtmm_keras.builders._keywords import checked_keywords
from mtmm_keras.layers import L2Normalization
from mtmm_keras.models import JointEmbeddingModel

SIMILARITIES = ("cosine", "dot")


@checked_keywords()
def joint_embedding(
    encoders: dict[str, keras.Model],
    loss: Any = "max_margin",
    *,
    embedding_dim: int | None = 64,
    similarity: str = "cosine",
    metrics: Sequence[Any] | None = None,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    compile: bool = True,
    name: str = "joint_embedding",
    **compile_kwargs: Any,
) -> JointEmbeddingModel:
    """Build a joint-embedding model: inputs and outputs are both keyed by modality name.

    Step 1: each modality's encoder is followed by a linear projection to `embedding_dim`
    (`embedding_dim=None` keeps the encoders' own outputs, which must then have one size) and, for
    `similarity="cosine"`, L2 normalisation; this tower is its own `keras.Model`, named
    "<modality>_tower" (see `tower(model, modality)`). Step 2: s = ⟨f_m(x), f_n(y)⟩. Step 3: `loss`
    ("max_margin" (default), "hardest_negative", "contrastive", "clip", "siglip", "cosine_embedding"
    or a Loss instance) on in-batch negatives, or on labelled pairs for the cosine-embedding loss.
    "clip" / "siglip" (`mk.losses.CLIPLoss` / `SigLIPLoss`) learn their temperature (and SigLIP's
    bias): the model gets a `LearnedTemperature` layer (`model.temperature`) whose trainable weights
    `logit_scale` / `logit_bias` start at the loss's `init_logit_scale` / `init_logit_bias`.

    `metrics`: Keras metrics for `compile`, e.g. `mk.metrics.RecallAtK(1, query="image", gallery="audio")` (in-batch
    retrieval, one per direction).

    Built inside a `tf.distribute` strategy scope, it compiles with settings that work there and its
    loss sees the global batch's negatives on every replica (see `JointEmbeddingModel`).
    """
    _checks.one_of(similarity, "similarity", SIMILARITIES)
    loss_fn = losses.get(loss)
    # 1. one encoder (+ projection, + normalisation) per modality into the shared space
    inputs, features = _common.modality_features(encoders, min_modalities=2, builder="joint_embedding")
    if embedding_dim is None:
        sizes = {m: f.shape[-1] for m, f in features.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"Embedding sizes do not match across modalities: {sizes}. Pass `embedding_dim` to project every "
                "modality to the same size, or make the encoders end at one size."
            )
    else:
        embedding_dim = _checks.positive_int(embedding_dim, "embedding_dim")
    if getattr(loss_fn, "pairwise", False) and len(encoders) != 2:
        raise ValueError(f"`loss` {type(loss_fn).__name__} works on pairs: it needs exactly 2 modalities, got {list(encoders)}.")
    outputs = {}
    for modality, encoder in encoders.items():
        tower = _tower(modality, encoder, embedding_dim, similarity)
        outputs[modality] = tower(inputs[modality])
    model = JointEmbeddingModel(inputs, outputs, name=name)
    if getattr(loss_fn, "learned_temperature", False):  # CLIP / SigLIP: the temperature is a model weight
        model.temperature = loss_fn.make_temperature()
    # 2.–3. similarity and loss live in JointEmbeddingModel.compute_loss
    if compile:
        # the builders' defaults, with what a tf.distribute strategy needs laid over them (the model
        # built in a strategy scope: one step per execution, no XLA; see mk.distribute.compile_defaults);
        # the caller's own arguments win over both
        settings = {
            **_common.compile_kwargs_with_defaults({}),
            **distribute.compile_defaults(model),
            **compile_kwargs,
        }
        if metrics is not None:
            settings["metrics"] = metrics
        model.compile(optimizer=_common.make_optimizer(optimizer, learning_rate), loss=loss_fn, **settings)
    return model


def _tower(modality: str, encoder: keras.Model, embedding_dim: int | None, similarity: str) -> keras.Model:
    spec = encoder.inputs[0]
    x_in = keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name=modality)
    x = _common.flatten(encoder(x_in))
    if embedding_dim is not None:
        x = keras.layers.Dense(embedding_dim, name=f"{modality}_projection")(x)
    if similarity == "cosine":
        x = L2Normalization(name=f"{modality}_l2_normalize")(x)
    return keras.Model(x_in, x, name=f"{modality}_tower")
