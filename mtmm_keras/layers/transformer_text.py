"""The Transformer text encoder's layers: a padding mask from token ids, learned position embeddings, a CLS token,
pre-norm encoder blocks and masked pooling (`keras.ops` only, registered, so a model reloads in safe mode and exports
to TFLite built-in ops and ONNX). `mk.encoders.transformer_text` assembles them; `from_backbone` reuses two."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks


@keras.saving.register_keras_serializable(package="mtmm")
class PaddingMask(keras.layers.Layer):
    """Token ids `[batch, length]` → float32 mask `[batch, num_prefix_tokens + length]`: 1 for a real token,
    0 where the id equals `padding_id`.

    `num_prefix_tokens` leading ones stand for tokens the model prepends itself (a CLS token). A float mask
    (not bool) keeps the exported graph to ops every runtime has (NOT_EQUAL, CAST, CONCATENATION).
    """

    def __init__(self, padding_id: int = 0, num_prefix_tokens: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(padding_id, int) or isinstance(padding_id, bool):
            raise TypeError(f"`padding_id` must be an integer token id, got {padding_id!r}.")
        self.padding_id = padding_id
        if not isinstance(num_prefix_tokens, int) or isinstance(num_prefix_tokens, bool) or num_prefix_tokens < 0:
            raise ValueError(f"`num_prefix_tokens` must be a non-negative integer, got {num_prefix_tokens!r}.")
        self.num_prefix_tokens = num_prefix_tokens

    def call(self, tokens: Any) -> Any:
        """Run `PaddingMask` on its inputs (the computation is described in the class docstring)."""
        mask = ops.cast(ops.not_equal(tokens, ops.cast(self.padding_id, tokens.dtype)), "float32")
        if self.num_prefix_tokens:
            prefix = ops.ones_like(mask[:, :1])
            mask = ops.concatenate([prefix] * self.num_prefix_tokens + [mask], axis=1)
        return mask

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        length = input_shape[1]
        return (input_shape[0], None if length is None else length + self.num_prefix_tokens)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(padding_id=self.padding_id, num_prefix_tokens=self.num_prefix_tokens)
        return config


@keras.saving.register_keras_serializable(package="mtmm")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per position to `[batch, sequence_length, dim]` embeddings (BERT/ViT style)."""

    def __init__(self, sequence_length: int, initializer: Any = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = _checks.positive_int(sequence_length, "sequence_length")
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape: Any) -> None:
        """Create `PositionEmbedding`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        if input_shape[1] is not None and input_shape[1] != self.sequence_length:
            raise ValueError(f"PositionEmbedding(sequence_length={self.sequence_length}) got inputs of length {input_shape[1]}.")
        self.position_embeddings = self.add_weight(
            name="embeddings", shape=(self.sequence_length, input_shape[-1]), initializer=self.initializer)

    def call(self, inputs: Any) -> Any:
        """Run `PositionEmbedding` on its inputs (the computation is described in the class docstring)."""
        return inputs + ops.cast(self.position_embeddings, inputs.dtype)[None]

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        return input_shape

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(sequence_length=self.sequence_length, initializer=keras.initializers.serialize(self.initializer))
        return config


@keras.saving.register_keras_serializable(package="mtmm")
class ClassToken(keras.layers.Layer):
    """Prepends one learned vector (the CLS token) to `[batch, length, dim]` → `[batch, 1 + length, dim]`."""

    def build(self, input_shape: Any) -> None:
        """Create `ClassToken`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]), initializer="zeros")

    def call(self, inputs: Any) -> Any:
        # zeros_like(first position) + token broadcasts to the batch without a dynamic Shape/BroadcastTo op
        """Run `ClassToken` on its inputs (the computation is described in the class docstring)."""
        first = ops.zeros_like(inputs[:, :1, :]) + ops.cast(self.token, inputs.dtype)
        return ops.concatenate([first, inputs], axis=1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output shape for inputs of shape `input_shape`, without running the layer."""
        length = input_shape[1]
        return (input_shape[0], None if length is None else length + 1, input_shape[2])


@keras.saving.register_keras_serializable(package="mtmm")
class TransformerEncoderBlock(keras.layers.Layer):
    """Pre-norm transformer encoder block (as in ViT and GPT-2; more stable than BERT's post-norm):

        x = x + Dropout(MHA(LN(x), LN(x), mask))
        x = x + Dropout(W2 · act(W1 · LN(x)))

    `padding_mask` (`[batch, length]`, 1 = token, 0 = padding) stops every position from attending to padding.
    The model dimension is the input's last axis; it must divide by `num_heads`. `activation="gelu"` is
    GELU's tanh approximation (as in BERT): the exact form lowers to Erfc, which ONNX has no op for.
    """

    def __init__(self, num_heads: int, ffn_units: int, dropout: float = 0.0, activation: str = "gelu",
                 epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = _checks.positive_int(num_heads, "num_heads")
        self.ffn_units = _checks.positive_int(ffn_units, "ffn_units")
        self.dropout = _checks.dropout_rate(dropout, "dropout")
        if not isinstance(activation, str):
            raise TypeError(f"`activation` must be a Keras activation name such as 'gelu' or 'relu', got {activation!r}.")
        self.activation = _checks.activation(activation, "activation")
        self.epsilon = float(epsilon)

    def build(self, inputs_shape: Any, padding_mask_shape: Any = None) -> None:
        """Create `TransformerEncoderBlock`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        input_shape = tuple(inputs_shape)
        dim = input_shape[-1]
        if dim is None or dim % self.num_heads:
            raise ValueError(f"The model dimension ({dim}) must be divisible by `num_heads` ({self.num_heads}).")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=self.epsilon, name="attention_norm")
        self.attention = keras.layers.MultiHeadAttention(self.num_heads, key_dim=dim // self.num_heads,
                                                         dropout=self.dropout, name="attention")
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=self.epsilon, name="ffn_norm")
        self.ffn_inner = keras.layers.Dense(self.ffn_units, name="ffn_inner")
        self.ffn_outer = keras.layers.Dense(dim, name="ffn_outer")
        self.residual_dropout = keras.layers.Dropout(self.dropout, name="residual_dropout")
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.ffn_norm.build(input_shape)
        self.ffn_inner.build(input_shape)
        self.ffn_outer.build(tuple(input_shape[:-1]) + (self.ffn_units,))

    def call(self, inputs: Any, padding_mask: Any = None, training: Any = None) -> Any:
        """Run `TransformerEncoderBlock` on its inputs (the computation is described in the class docstring)."""
        attention_mask = None
        if padding_mask is not None:  # [batch, 1, length]: every query ignores padded keys
            attention_mask = ops.expand_dims(ops.greater(padding_mask, 0.5), 1)
        h = self.attention_norm(inputs)
        h = self.attention(h, h, attention_mask=attention_mask, training=training)
        x = inputs + self.residual_dropout(h, training=training)
        h = self.ffn_inner(self.ffn_norm(x))
        if self.activation == "gelu":  # tanh approximation (as BERT): exact GELU lowers to Erfc, which ONNX lacks
            h = ops.gelu(h, approximate=True)
        else:
            h = keras.activations.get(self.activation)(h)
        h = self.ffn_outer(h)
        return x + self.residual_dropout(h, training=training)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(num_heads=self.num_heads, ffn_units=self.ffn_units, dropout=self.dropout,
                      activation=self.activation, epsilon=self.epsilon)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TransformerEncoderBlock":
        """Re-create the object from the dict `get_config()` returned (what `keras.models.load_model` calls)."""
        config = dict(config)
        if "ff_dim" in config:  # the key models saved by mtmm-keras 0.1 hold
            config["ffn_units"] = config.pop("ff_dim")
        return cls(**config)


@keras.saving.register_keras_serializable(package="mtmm")
class SequencePooling(keras.layers.Layer):
    """`[batch, length, dim]` → `[batch, dim]`: "mean" averages the positions where `padding_mask` is 1
    (all positions without a mask; an all-padding row gives zeros), "sum" adds them up (a bag of words' total),
    "first" takes position 0 (the CLS token)."""

    MODES = ("mean", "first", "sum")

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        self.mode = _checks.one_of(mode, "mode", self.MODES)

    def call(self, inputs: Any, padding_mask: Any = None) -> Any:
        """Run `SequencePooling` on its inputs (the computation is described in the class docstring)."""
        if self.mode == "first":
            return inputs[:, 0, :]
        if padding_mask is None:
            return ops.sum(inputs, axis=1) if self.mode == "sum" else ops.mean(inputs, axis=1)
        weights = ops.expand_dims(ops.cast(padding_mask, inputs.dtype), -1)
        total = ops.sum(inputs * weights, axis=1)
        if self.mode == "sum":
            return total
        return total / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(mode=self.mode)
        return config
