"""TransformerFusion: every modality's tokens attend to each other (pre-norm Transformer blocks with
`keras.layers.MultiHeadAttention`), then a masked mean pool; or, with `bottleneck_tokens=k`, the modalities
exchange information only through k shared learned tokens (Nagrani et al. 2021, attention bottlenecks)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mtmm_keras import _checks
from mtmm_keras.layers.modality_mask import masked_softmax, present, safe_divide, zero_missing


def _gelu(x: Any) -> Any:
    """GELU, tanh approximation: the exact form lowers to Erfc on TensorFlow, which ONNX (opset ≤ 20) lacks."""
    return keras.activations.gelu(x, approximate=True)


class _MaskedMultiHeadAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` whose masked softmax uses no -1e9 sentinel (`masked_softmax`): Keras's
    `where(mask, scores, -1e9)` stretches the int8 range of the scores so far that a full-integer TFLite
    export attends uniformly. Same probabilities in float. Created only inside `TransformerFusion.build`
    (never in a saved config, hence not registered); should Keras rename `_masked_softmax`, Keras's own
    masking applies again (still exact in float)."""

    def _masked_softmax(self, attention_scores: Any, attention_mask: Any = None) -> Any:
        if attention_mask is None:
            return super()._masked_softmax(attention_scores, attention_mask)
        axis = -len(self._attention_axes) * 2 - 1
        while len(attention_mask.shape) < len(attention_scores.shape):
            attention_mask = ops.expand_dims(attention_mask, axis=axis)
        return masked_softmax(attention_scores, attention_mask, axis=-1)


@keras.saving.register_keras_serializable(package="mtmm")
class TransformerFusion(keras.layers.Layer):
    """Fuse M modalities given as token sequences `[batch, T_m, d]` (T_m = 1 for a feature vector) into `[batch, d]`.

    Each modality's tokens get a learned modality embedding (and, when T_m > 1, a learned position embedding).
    Full fusion: the concatenated tokens go through `num_blocks` pre-norm blocks,
    x ← x + MHA(LN(x)); x ← x + FFN(LN(x)) (FFN: Dense(ffn_units, gelu (tanh form)) → Dense(d)), a final
    LayerNorm, and a mean over the tokens. Bottleneck fusion (`bottleneck_tokens=k > 0`, Nagrani et al. 2021): each block has
    one Transformer block per modality over [its tokens, the k bottleneck tokens]; the bottleneck tokens'
    new value is the mean of the modalities' updates, so modalities only exchange information through them
    (fusion starts at the first block; the encoders play the paper's unimodal early layers).

    `modality_mask` (`[batch, M]`, 1 = present): a missing modality's tokens are replaced by zeros, are never
    attended to (key mask of MultiHeadAttention; in the bottleneck variant its update of the bottleneck is
    left out of the mean) and are left out of the pooling, so whatever its input held, the output is the
    same. A row with every modality missing pools to the zero vector.
    With `return_attention_scores=True` the call returns `(fused, maps)`: a list of attention maps
    `[batch, heads, T, T]`, one per block (full fusion; T = Σ T_m, tokens in modality order), or one per
    block and modality `[batch, heads, T_m + k, T_m + k]` (bottleneck fusion, block-major).

    Args:
        num_blocks: number of Transformer blocks.
        num_heads: attention heads; key_dim: size of each head (default d // num_heads).
        ffn_units: width of the feed-forward layer (default 2 d).
        dropout: dropout rate in attention and after each residual branch.
        bottleneck_tokens: 0 for full fusion, else the number k of shared bottleneck tokens.
    """

    def __init__(self, num_blocks: int = 1, num_heads: int = 2, key_dim: int | None = None,
                 ffn_units: int | None = None, dropout: float = 0.0, bottleneck_tokens: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_blocks = _checks.positive_int(num_blocks, "num_blocks")
        self.num_heads = _checks.positive_int(num_heads, "num_heads")
        self.key_dim = None if key_dim is None else _checks.positive_int(key_dim, "key_dim")
        self.ffn_units = None if ffn_units is None else _checks.positive_int(ffn_units, "ffn_units")
        self.dropout = _checks.dropout_rate(dropout, "dropout")
        if isinstance(bottleneck_tokens, bool) or not isinstance(bottleneck_tokens, int) or bottleneck_tokens < 0:
            raise ValueError(f"`bottleneck_tokens` must be 0 (full fusion) or a positive int, got {bottleneck_tokens!r}.")
        self.bottleneck_tokens = bottleneck_tokens

    @staticmethod
    def _token_shapes(input_shape: Any) -> tuple[list[int], int]:
        if not (isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple))):
            raise ValueError(f"TransformerFusion takes a list of [batch, tokens, d] tensors, one per modality; got {input_shape}.")
        shapes = [tuple(s) for s in input_shape]
        if len(shapes) < 2:
            raise ValueError(f"TransformerFusion needs at least 2 modalities, got {len(shapes)}.")
        if any(len(s) != 3 or s[1] is None for s in shapes) or len({s[-1] for s in shapes}) != 1 or shapes[0][-1] is None:
            raise ValueError(
                "TransformerFusion inputs must each be [batch, tokens, d] with a known number of tokens and one "
                f"shared, known d (project them first); got shapes {shapes}."
            )
        return [int(s[1]) for s in shapes], int(shapes[0][-1])

    def _block(self, index: str, dim: int, tokens: int) -> dict[str, Any]:
        key_dim = self.key_dim or max(1, dim // self.num_heads)
        block = {
            "norm1": keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{index}_norm1"),
            "attention": _MaskedMultiHeadAttention(self.num_heads, key_dim, dropout=self.dropout,
                                                   name=f"block{index}_attention"),
            "norm2": keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{index}_norm2"),
            "ffn1": keras.layers.Dense(self.ffn_units or 2 * dim, activation=_gelu, name=f"block{index}_ffn1"),
            "ffn2": keras.layers.Dense(dim, name=f"block{index}_ffn2"),
            "dropout": keras.layers.Dropout(self.dropout, name=f"block{index}_dropout"),
        }
        shape = (None, tokens, dim)
        block["norm1"].build(shape)
        block["attention"].build(shape, shape)
        block["norm2"].build(shape)
        block["ffn1"].build(shape)
        block["ffn2"].build((None, tokens, self.ffn_units or 2 * dim))
        return block

    def build(self, input_shape: Any) -> None:
        """Create `TransformerFusion`'s weights for inputs of shape `input_shape` (Keras calls it once, before the first call)."""
        counts, dim = self._token_shapes(input_shape)
        self.token_counts, self.dim = counts, dim
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.modality_embedding = self.add_weight(name="modality_embedding", shape=(len(counts), dim), initializer=init)
        self.position_embeddings = [
            self.add_weight(name=f"position_embedding_{m}", shape=(t, dim), initializer=init) if t > 1 else None
            for m, t in enumerate(counts)
        ]
        k = self.bottleneck_tokens
        if k:
            self.bottleneck = self.add_weight(name="bottleneck", shape=(k, dim), initializer=init)
            blocks = [self._block(f"{b + 1}_m{m}", dim, t + k) for b in range(self.num_blocks) for m, t in enumerate(counts)]
        else:
            blocks = [self._block(str(b + 1), dim, sum(counts)) for b in range(self.num_blocks)]
        # flat lists (tracked by Keras) in block order; the dicts above only name them while building
        self.norms1 = [b["norm1"] for b in blocks]
        self.attentions = [b["attention"] for b in blocks]
        self.norms2 = [b["norm2"] for b in blocks]
        self.ffns1 = [b["ffn1"] for b in blocks]
        self.ffns2 = [b["ffn2"] for b in blocks]
        self.dropouts = [b["dropout"] for b in blocks]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.final_norm.build((None, None, dim))

    def _run_block(self, i: int, x: Any, value_mask: Any, training: Any) -> tuple[Any, Any]:
        y = self.norms1[i](x)
        y, scores = self.attentions[i](y, y, value_mask=value_mask, return_attention_scores=True, training=training)
        x = x + self.dropouts[i](y, training=training)
        y = self.ffns2[i](self.dropouts[i](self.ffns1[i](self.norms2[i](x)), training=training))
        return x + self.dropouts[i](y, training=training), scores

    def call(self, inputs: Any, modality_mask: Any = None, return_attention_scores: bool = False,
             training: Any = None) -> Any:
        """Run `TransformerFusion` on its inputs (the computation is described in the class docstring)."""
        xs = list(inputs)
        mask = None if modality_mask is None else present(modality_mask, xs[0].dtype)
        tokens = []
        for m, x in enumerate(xs):
            if mask is not None:
                x = zero_missing(x, mask[:, m:m + 1])
            x = x + self.modality_embedding[m]
            if self.position_embeddings[m] is not None:
                x = x + self.position_embeddings[m]
            tokens.append(x)
        # per-token presence [B, T_m] for each modality (all ones without a mask)
        # (ones_like of a sum, not of t[:, :, 0]: a shrink-axis slice keeps LiteRT's GPU accelerator off the graph)
        token_masks = [ops.ones_like(ops.sum(t, axis=-1)) if mask is None else ops.ones_like(ops.sum(t, axis=-1)) * mask[:, m:m + 1]
                       for m, t in enumerate(tokens)]
        maps = []
        if not self.bottleneck_tokens:
            x = ops.concatenate(tokens, axis=1)
            token_mask = ops.concatenate(token_masks, axis=1)
            value_mask = None if mask is None else token_mask > 0
            for i in range(self.num_blocks):
                x, scores = self._run_block(i, x, value_mask, training)
                maps.append(scores)
        else:
            count = len(tokens)
            shared = ops.zeros_like(tokens[0][:, :1, :1]) + ops.expand_dims(self.bottleneck, 0)  # [B, k, d]
            for b in range(self.num_blocks):
                updates = []
                for m in range(count):
                    z, scores = self._run_block(b * count + m, ops.concatenate([tokens[m], shared], axis=1), None, training)
                    maps.append(scores)
                    tokens[m] = z[:, : self.token_counts[m]]
                    updates.append(z[:, self.token_counts[m]:])
                stacked = ops.stack(updates, axis=1)  # [B, M, k, d]
                if mask is None:
                    shared = ops.mean(stacked, axis=1)
                else:  # mean over the present modalities' updates only (0 when none is present)
                    weights = ops.reshape(mask, (-1, count, 1, 1))
                    shared = safe_divide(ops.sum(stacked * weights, axis=1), ops.sum(weights, axis=1))
            x = ops.concatenate(tokens, axis=1)
            token_mask = ops.concatenate(token_masks, axis=1)
        x = self.final_norm(x)
        weights = ops.expand_dims(token_mask, -1)  # masked mean over the present tokens
        fused = safe_divide(ops.sum(x * weights, axis=1), ops.sum(weights, axis=1))
        if return_attention_scores:
            return fused, maps
        return fused

    def compute_output_spec(self, inputs: Any, modality_mask: Any = None, return_attention_scores: bool = False,
                            training: Any = None) -> Any:
        """The output's shape and dtype for symbolic inputs, without running the layer."""
        counts, dim = self._token_shapes([tuple(t.shape) for t in inputs])
        batch, dtype = inputs[0].shape[0], inputs[0].dtype
        fused = keras.KerasTensor((batch, dim), dtype=dtype)
        if not return_attention_scores:
            return fused
        k = self.bottleneck_tokens
        if k:
            maps = [keras.KerasTensor((batch, self.num_heads, t + k, t + k), dtype=dtype)
                    for _ in range(self.num_blocks) for t in counts]
        else:
            total = sum(counts)
            maps = [keras.KerasTensor((batch, self.num_heads, total, total), dtype=dtype) for _ in range(self.num_blocks)]
        return fused, maps

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        config.update(num_blocks=self.num_blocks, num_heads=self.num_heads, key_dim=self.key_dim,
                      ffn_units=self.ffn_units, dropout=self.dropout, bottleneck_tokens=self.bottleneck_tokens)
        return config
