"""A model's named inputs and outputs, the sample batch used for verification, and the export-ready clone."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Name, shape (None = dynamic) and dtype of one model input or output."""

    name: str
    shape: tuple
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def input_infos(model: keras.Model, batch_size: int | None = None) -> list[TensorInfo]:
    names = [t.name.split(":")[0] for t in model.inputs]
    if len(set(names)) != len(names):
        raise ValueError(f"The model's inputs need unique names to be exported, got {names}.")
    return [TensorInfo(n, (batch_size,) + tuple(t.shape[1:]), str(t.dtype)) for n, t in zip(names, model.inputs)]


def output_names(model: keras.Model) -> list[str]:
    if isinstance(model.output, dict):
        return list(model.output)
    return list(model.output_names)


def call_with_named_inputs(model: keras.Model, named: dict[str, Any]) -> dict[str, Any]:
    """Call `model` on a {input name: tensor} dict and return {output name: tensor}, whatever its structure."""
    struct = model._inputs_struct
    if isinstance(struct, dict):
        args = {key: named[t.name.split(":")[0]] for key, t in struct.items()}
    elif isinstance(struct, (list, tuple)):
        args = [named[t.name.split(":")[0]] for t in model.inputs]
    else:
        args = named[model.inputs[0].name.split(":")[0]]
    outputs = model(args, training=False)
    if isinstance(outputs, dict):
        return dict(outputs)
    if isinstance(outputs, (list, tuple)):
        return dict(zip(output_names(model), outputs))
    return {output_names(model)[0]: outputs}


MODALITY_MASK = "modality_mask"  # a fusion model's presence input (mk.builders.*_fusion with modality_mask)


def presence_patterns(rows: int, modalities: int, dtype: str = "float32") -> np.ndarray:
    """`[rows, modalities]` 0/1 masks cycling through every modality present, then each one missing in turn:
    what `export_model` feeds a fused model whose `modality_mask` the caller left out, so int8 calibration sees
    both 0 and 1 and verification covers each missing modality."""
    patterns = np.ones((modalities + 1, modalities), dtype=dtype)
    patterns[1:][np.arange(modalities), np.arange(modalities)] = 0
    return patterns[np.arange(rows) % len(patterns)]


def sample_inputs(model: keras.Model, num_samples: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed random batch matching the model's inputs (integer inputs stay below the smallest vocabulary)."""
    rng = np.random.default_rng(seed)
    vocab = min((layer.input_dim for layer in _all_layers(model) if isinstance(layer, keras.layers.Embedding)), default=2)
    batch = {}
    for info in input_infos(model):
        shape = (num_samples,) + tuple(d or 1 for d in info.shape[1:])
        if "int" in info.dtype:
            batch[info.name] = rng.integers(0, vocab, size=shape).astype(info.dtype)
        elif info.name == MODALITY_MASK:  # a fusion model's presence mask: 0/1 (missing modalities checked too)
            batch[info.name] = rng.integers(0, 2, size=shape).astype(info.dtype)
        else:
            batch[info.name] = rng.normal(size=shape).astype(info.dtype)
    return batch


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def export_clone(model: keras.Model) -> keras.Model:
    """The same model and weights, rebuilt so its graph exports everywhere.

    Recurrent layers are unrolled (no TensorList while-loop: no Flex ops with a dynamic batch,
    and full-integer calibration works) and never use cuDNN kernels (a model built on a GPU
    exports for CPU and edge). Models without recurrent layers are returned as they are.
    """
    if not any(type(layer).__name__ in RECURRENT_LAYERS for layer in _all_layers(model)):
        return model
    config = keras.saving.serialize_keras_object(model)
    _patch_recurrent(config)
    clone = keras.saving.deserialize_keras_object(config)
    clone.set_weights(model.get_weights())
    return clone


def _patch_recurrent(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("class_name") in RECURRENT_LAYERS and isinstance(node.get("config"), dict):
            node["config"]["unroll"] = True
            if node["class_name"] in ("LSTM", "GRU"):  # get_config omits it; the constructor takes it
                node["config"]["use_cudnn"] = False
        for value in node.values():
            _patch_recurrent(value)
    elif isinstance(node, list):
        for value in node:
            _patch_recurrent(value)
