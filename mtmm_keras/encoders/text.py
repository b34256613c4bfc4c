"""Text encoder: integer token ids `[batch, sequence_length]` → one feature vector per sequence."""

from __future__ import annotations

import keras

from mtmm_keras import _checks

KINDS = ("lstm", "conv")
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
    hidden_dim: int = 64,
    kind: str = "lstm",
    unroll: bool | None = None,
    input_name: str = "tokens",
    name: str = "text_encoder",
) -> keras.Model:
    """Embedding + LSTM (last hidden state, the spec's text encoder) or Embedding + two Conv1D + max-pool.

    Token id 0 is an ordinary id (no masking), which keeps the graph exportable. `unroll` (LSTM
    only): None unrolls sequences of at most `UNROLL_MAX_LENGTH` tokens on TensorFlow and PyTorch
    (faster to train, same weights and results) and loops over longer ones, and always loops on JAX
    (XLA compiles the loop faster and trains it faster); True/False force it.
    """
    vocab_size = _checks.positive_int(vocab_size, "vocab_size")
    sequence_length = _checks.positive_int(sequence_length, "sequence_length")
    embedding_dim = _checks.positive_int(embedding_dim, "embedding_dim")
    hidden_dim = _checks.positive_int(hidden_dim, "hidden_dim")
    _checks.one_of(kind, "kind", KINDS)
    if unroll is None:
        unroll = sequence_length <= UNROLL_MAX_LENGTH and keras.backend.backend() in UNROLL_BACKENDS
    elif not isinstance(unroll, bool):
        raise TypeError(f"`unroll` must be True, False or None (automatic), got {unroll!r}.")
    tokens = keras.Input(shape=(sequence_length,), dtype="int32", name=input_name)
    x = keras.layers.Embedding(vocab_size, embedding_dim, name="token_embedding")(tokens)
    if kind == "lstm":
        x = keras.layers.LSTM(hidden_dim, unroll=unroll, name="lstm")(x)
    else:
        x = keras.layers.Conv1D(hidden_dim, 3, padding="same", activation="relu", name="conv1")(x)
        x = keras.layers.Conv1D(hidden_dim, 3, padding="same", activation="relu", name="conv2")(x)
        x = keras.layers.GlobalMaxPooling1D(name="pool")(x)
    return keras.Model(tokens, x, name=name)
