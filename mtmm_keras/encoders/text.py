"""Text encoder: integer token ids `[batch, sequence_length]` → one feature vector per sequence."""

from __future__ import annotations

import keras

from mtmm_keras import _checks
from mtmm_keras.layers.transformer_text import PaddingMask, SequencePooling

KINDS = ("lstm", "conv", "mean", "sum")
BAG_KINDS = ("mean", "sum")
# Sequences up to this length are unrolled by default on TensorFlow (and PyTorch): on CPU the unrolled
# LSTM trains ~8 % faster there (joint-embedding benchmark, 32 tokens) with no per-step loop bookkeeping,
# and the graph stays small. Not on JAX: XLA compiles the unrolled graph 3.6x longer (48 s vs 13.5 s for
# the joint-embedding model's first fit) and its `lax.scan` loop trains faster (1.17x samples/s), both
# measured side by side on a loaded 2-core CPU (benchmarks/README.md, "Speed").
UNROLL_MAX_LENGTH = 64
UNROLL_BACKENDS = ("tensorflow", "torch")


def text(
    vocab_size: int,
    sequence_length: int,
    embedding_dim: int = 64,
    hidden_dim: int | None = 64,
    kind: str = "lstm",
    unroll: bool | None = None,
    dropout: float = 0.0,
    embedding_l2: float = 0.0,
    token_dropout: float = 0.0,
    input_name: str = "tokens",
    name: str = "text_encoder",
) -> keras.Model:
    """Embedding + LSTM (last hidden state, the spec's text encoder), Embedding + two Conv1D + max-pool, or a
    bag of words: "mean" / "sum", the mean / sum of the embeddings of the tokens that are not padding (id 0), then
    Dense(hidden_dim, ReLU) — or nothing more with `hidden_dim=None` (bag kinds only: the output is the pooled
    embedding; "sum" with a linear head is then a linear model of the word counts).

    For "lstm" and "conv", token id 0 is an ordinary id (no masking), which keeps the graph exportable; the bag
    kinds mask it with float ops (NOT_EQUAL, CAST, MUL, SUM, DIV) that every runtime, LiteRT's GPU accelerator
    included, runs. `dropout` (default 0) drops units of the pooled vector (bag kinds only); `embedding_l2` (default 0) adds that
    L2 penalty on the token embeddings to the loss (rare words' vectors stay small, as in a regularised linear model); `token_dropout` (bag kinds, default 0) leaves
    each word out of the bag at that rate during training. `unroll` (LSTM
    only): None unrolls sequences of at most `UNROLL_MAX_LENGTH` tokens on TensorFlow and PyTorch
    (faster to train, same weights and results) and loops over longer ones, and always loops on JAX
    (XLA compiles the loop faster and trains it faster); True/False force it.
    """
    vocab_size = _checks.positive_int(vocab_size, "vocab_size")
    sequence_length = _checks.positive_int(sequence_length, "sequence_length")
    embedding_dim = _checks.positive_int(embedding_dim, "embedding_dim")
    _checks.one_of(kind, "kind", KINDS)
    if hidden_dim is not None or kind not in BAG_KINDS:
        hidden_dim = _checks.positive_int(hidden_dim, "hidden_dim")
    dropout = _checks.non_negative_float(dropout, "dropout")
    embedding_l2 = _checks.non_negative_float(embedding_l2, "embedding_l2")
    token_dropout = _checks.non_negative_float(token_dropout, "token_dropout")
    if token_dropout >= 1.0:
        raise ValueError(f"`token_dropout` must be below 1, got {token_dropout}.")
    if token_dropout and kind not in BAG_KINDS:
        raise ValueError(f"`token_dropout` applies to the bag kinds {BAG_KINDS} only, got kind {kind!r}.")
    if dropout and kind not in BAG_KINDS:
        raise ValueError(f"`dropout` applies to the bag kinds {BAG_KINDS} only, got kind {kind!r} with dropout {dropout}.")
    if unroll is None:
        unroll = sequence_length <= UNROLL_MAX_LENGTH and keras.backend.backend() in UNROLL_BACKENDS
    elif not isinstance(unroll, bool):
        raise TypeError(f"`unroll` must be True, False or None (automatic), got {unroll!r}.")
    tokens = keras.Input(shape=(sequence_length,), dtype="int32", name=input_name)
    regularizer = keras.regularizers.L2(embedding_l2) if embedding_l2 else None
    x = keras.layers.Embedding(vocab_size, embedding_dim, embeddings_regularizer=regularizer, name="token_embedding")(tokens)
    if kind in BAG_KINDS:
        mask = PaddingMask(name="padding_mask")(tokens)
        if token_dropout:  # training only: each word left out at this rate (the kept ones scaled up, as Dropout does)
            mask = keras.layers.Dropout(token_dropout, name="token_dropout")(mask)
        x = SequencePooling(kind, name=f"{kind}_pool")(x, padding_mask=mask)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
        if hidden_dim is not None:
            x = keras.layers.Dense(hidden_dim, activation="relu", name="dense")(x)
    elif kind == "lstm":
        x = keras.layers.LSTM(hidden_dim, unroll=unroll, name="lstm")(x)
    else:
        x = keras.layers.Conv1D(hidden_dim, 3, padding="same", activation="relu", name="conv1")(x)
        x = keras.layers.Conv1D(hidden_dim, 3, padding="same", activation="relu", name="conv2")(x)
        x = keras.layers.GlobalMaxPooling1D(name="pool")(x)
    return keras.Model(tokens, x, name=name)
