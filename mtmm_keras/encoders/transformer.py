"""Transformer text encoder: token + learned position embeddings, pre-norm encoder blocks with a padding
mask (token id 0), and masked mean or CLS pooling. Every piece is a registered `keras.ops` layer, so the
model reloads in safe mode and exports to TFLite built-in ops and ONNX."""

from __future__ import annotations


import keras

from mtmm_keras import _checks
from mtmm_keras.layers.transformer_text import (  # noqa: F401  (also importable from here, as in 0.1)
    ClassToken,
    PaddingMask,
    PositionEmbedding,
    SequencePooling,
    TransformerEncoderBlock,
)

POOLINGS = ("mean", "cls")


def transformer_text(
    vocab_size: int,
    sequence_length: int,
    embedding_dim: int = 64,
    num_heads: int = 4,
    num_layers: int = 2,
    ffn_units: int = 128,
    dropout: float = 0.1,
    pooling: str = "mean",
    output_dim: int | None = None,
    input_name: str = "text",
    name: str = "transformer_text_encoder",
) -> keras.Model:
    """Token ids `[batch, sequence_length]` (int32, 0 = padding) → one feature vector per sequence.

    Token embedding + learned position embedding, `num_layers` pre-norm encoder blocks
    (`TransformerEncoderBlock`: multi-head self-attention + a GELU (tanh approximation) feed-forward of width `ffn_units`), a
    final LayerNorm, then pooling: "mean" averages the real tokens, "cls" prepends a learned CLS token and
    returns its final state. Padded positions are never attended to nor pooled, so a sequence's features
    do not depend on how much padding follows it. `output_dim` adds a Dense(ReLU) projection.
    """
    vocab_size = _checks.positive_int(vocab_size, "vocab_size")
    sequence_length = _checks.positive_int(sequence_length, "sequence_length")
    embedding_dim = _checks.positive_int(embedding_dim, "embedding_dim")
    num_heads = _checks.positive_int(num_heads, "num_heads")
    num_layers = _checks.positive_int(num_layers, "num_layers")
    ffn_units = _checks.positive_int(ffn_units, "ffn_units")
    dropout = _checks.dropout_rate(dropout, "dropout")
    _checks.one_of(pooling, "pooling", POOLINGS)
    if embedding_dim % num_heads:
        raise ValueError(f"`embedding_dim` ({embedding_dim}) must be divisible by `num_heads` ({num_heads}).")
    tokens = keras.Input(shape=(sequence_length,), dtype="int32", name=input_name)
    cls = pooling == "cls"
    mask = PaddingMask(0, num_prefix_tokens=int(cls), name="padding_mask")(tokens)
    x = keras.layers.Embedding(vocab_size, embedding_dim, name="token_embedding")(tokens)
    x = PositionEmbedding(sequence_length, name="position_embedding")(x)
    if cls:
        x = ClassToken(name="cls_token")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(num_layers):
        x = TransformerEncoderBlock(num_heads, ffn_units, dropout=dropout, name=f"block{i + 1}")(x, padding_mask=mask)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    if cls:
        x = SequencePooling("first", name="pool")(x)
    else:
        x = SequencePooling("mean", name="pool")(x, padding_mask=mask)
    if output_dim is not None:
        x = keras.layers.Dense(_checks.positive_int(output_dim, "output_dim"), activation="relu", name="features")(x)
    return keras.Model(tokens, x, name=name)
