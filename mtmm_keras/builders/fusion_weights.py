"""Read-out of a fusion model's per-modality weights: attention α, GMU gates, or Transformer attention maps."""

from __future__ import annotations

import keras

from mtmm_keras.layers import AttentionFusion, ConcatFusion, GatedFusion, TransformerFusion
from mtmm_keras.layers.modality_mask import MODALITY_MASK


def fusion_weights(model: keras.Model) -> keras.Model:
    """A sub-model (shared weights) mapping the fusion model's inputs to a dict of its fusion weights.

    - `attention_fusion`: {"attention": α `[batch, M]`};
    - `gated_fusion`: {"gates": z `[batch, M, fusion_dim]`, summing to 1 over M};
    - `transformer_fusion`: {"block<i>": `[batch, heads, T, T]`} per block (tokens in `encoders` order), or
      with bottleneck tokens {"block<i>_<modality>": `[batch, heads, T_m + k, T_m + k]`} (the k bottleneck
      tokens last).
    Columns / modality axes follow the order of the `encoders` dict. Concatenation has no such weights.
    """
    layer = next((l for l in model.layers if isinstance(l, (AttentionFusion, GatedFusion, TransformerFusion, ConcatFusion))), None)
    if layer is None:
        raise ValueError(
            f"Model {model.name!r} has no fusion layer; build it with mk.builders.attention_fusion, gated_fusion or "
            "transformer_fusion."
        )
    if isinstance(layer, ConcatFusion):
        raise ValueError(
            f"Model {model.name!r} fuses by concatenation, which has no per-modality weights to read; "
            "attention_fusion, gated_fusion and transformer_fusion have them."
        )
    output = layer.output
    if isinstance(layer, AttentionFusion):
        weights = {"attention": output[1]}
    elif isinstance(layer, GatedFusion):
        weights = {"gates": output[1]}
    else:
        modalities = _modality_names(model)
        maps = list(output[1:])  # a layer's `output` is its flat list of output tensors: (fused, map, map, ...)
        if layer.bottleneck_tokens:
            count = len(layer.token_counts)
            names = [f"block{i // count + 1}_{modalities[i % count]}" for i in range(len(maps))]
        else:
            names = [f"block{i + 1}" for i in range(len(maps))]
        weights = dict(zip(names, maps))
    return keras.Model(model.inputs, weights, name=f"{model.name}_fusion_weights")


def _modality_names(model: keras.Model) -> list[str]:
    """The modality inputs in `encoders` order (the model's input dict without `modality_mask`)."""
    struct = model.input  # public: the functional model's input structure (a dict for the fusion builders)
    if isinstance(struct, dict):
        return [name for name in struct if name != MODALITY_MASK]
    return [t.name for t in model.inputs if t.name != MODALITY_MASK]
