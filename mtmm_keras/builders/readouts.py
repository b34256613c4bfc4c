"""Read-outs: what a built model computes inside, as the builders' models expose it.

Activations come back as a `keras.Model` on the same inputs (call or `predict` it like the model itself):
`gate_model` (every expert gate's weights, mmoe/cgc/ple), `fusion_weights` (attention / gate / attention-map
weights over modalities, the fusion builders), `attention_model` (attention fusion's weights), `tower` (one
modality's embedding tower of a joint-embedding model). Parameters that do not depend on the input come back as
NumPy arrays: `stitch_weights` (cross-stitch matrices). `with_attention_output` adds the attention weights to an
attention-fusion model's outputs (for export).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mtmm_keras.builders.attention_fusion import ATTENTION_OUTPUT
from mtmm_keras.builders.attention_fusion import FUSION_LAYER as ATTENTION_LAYER
from mtmm_keras.builders.gates import GATE_PREFIX
from mtmm_keras.layers import (
    AttentionFusion,
    ConcatFusion,
    CrossStitch,
    DSelectKGate,
    GatedFusion,
    SoftmaxGate,
    TransformerFusion,
)
from mtmm_keras.layers.modality_mask import MODALITY_MASK
from mtmm_keras.models import MultiTaskModel


def gate_key(layer_name: str) -> str:
    """"gate_a" → "a"; "level1_gate_shared" → "level1_shared"."""
    head, _, tail = layer_name.partition(GATE_PREFIX)
    return head + tail


def gate_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """{gate key: gate layer} of a model built by `mmoe`, `cgc` or `ple`, in build order."""
    gates = {gate_key(layer.name): layer for layer in model.layers if isinstance(layer, (SoftmaxGate, DSelectKGate))}
    if not gates:
        raise ValueError(f"Model {model.name!r} has no expert gates; build it with mk.builders.mmoe, cgc or ple.")
    return gates


def gate_model(model: keras.Model) -> keras.Model:
    """A sub-model mapping the inputs to `{key: gate weights [batch, experts]}` for every gate.

    Keys: the task name for each task's (last-level) gate; in `ple`, the earlier levels' gates are
    `"level<l>_<task>"` and `"level<l>_shared"`. Expert order: see the builder's docstring.
    """
    outputs = {key: layer.output for key, layer in gate_layers(model).items()}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_gates")


def has_gates(model: keras.Model) -> bool:
    """True when `model` has expert gates (`SoftmaxGate` or `DSelectKGate`), i.e. `gate_model` applies."""
    return any(isinstance(layer, (SoftmaxGate, DSelectKGate)) for layer in model.layers)


def mean_gate_weights(model: keras.Model, x: Any, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Each gate's weights averaged over the examples `x`: `{key: [experts]}` (what the zoo plots)."""
    weights = gate_model(model).predict(x, batch_size=batch_size, verbose=0)
    return {key: np.asarray(value).mean(axis=0) for key, value in weights.items()}


def stitch_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """{layer name: α [tasks, tasks]} of a `cross_stitch` model; row i mixes the towers into task i's."""
    stitches = {layer.name: np.asarray(keras.ops.convert_to_numpy(layer.alpha))
                for layer in model.layers if isinstance(layer, CrossStitch)}
    if not stitches:
        raise ValueError(f"Model {model.name!r} has no cross-stitch layers; build it with mk.builders.cross_stitch.")
    return stitches


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


def _attention_tensor(model: keras.Model) -> Any:
    try:
        layer = model.get_layer(ATTENTION_LAYER)
    except ValueError:
        raise ValueError(f"Model {model.name!r} has no {ATTENTION_LAYER!r} layer; build it with mk.builders.attention_fusion.") from None
    return layer.output[1]


def attention_model(model: keras.Model) -> keras.Model:
    """A sub-model of an attention-fusion model that maps its inputs to α `[batch, modalities]`."""
    return keras.Model(model.inputs, _attention_tensor(model), name=f"{model.name}_attention")


def with_attention_output(model: keras.Model) -> keras.Model:
    """The same model (shared weights, not compiled) with α added as the output named "attention"."""
    outputs = dict(model.output) if isinstance(model.output, dict) else {model.output_names[0]: model.output}
    outputs[ATTENTION_OUTPUT] = _attention_tensor(model)
    combined = MultiTaskModel(model.inputs, outputs, name=f"{model.name}_with_attention")
    object.__setattr__(combined, "task_configs", getattr(model, "task_configs", ()))  # the heads stay what they were
    return combined


def tower(model: keras.Model, modality: str) -> keras.Model:
    """The stand-alone encoder tower (encoder + projection + normalisation) for `modality`."""
    try:
        return model.get_layer(f"{modality}_tower")
    except ValueError:
        towers = [layer.name[: -len("_tower")] for layer in model.layers if layer.name.endswith("_tower")]
        raise ValueError(f"`modality` {modality!r} is not in this model; its modalities are {towers}.") from None
