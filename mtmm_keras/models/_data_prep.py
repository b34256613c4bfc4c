"""What `fit`/`evaluate`/`predict` hand to Keras, prepared from what the user gave: a fusion model's missing
`modality_mask` filled with ones (arrays, tensors or a tf.data pipeline), a one-input dict unwrapped, NumPy text
for a string input as TF string tensors. The data itself is never altered."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mtmm_keras.layers.modality_mask import MODALITY_MASK
from mtmm_keras.models._arrays import input_struct, is_array
from mtmm_keras.models._input_checks import named_inputs


def fill_modality_mask(model: Any, x: Any) -> Any:
    """A fusion model's `modality_mask` input (`[batch, M]`, 1 = present) defaults to all ones: `x` given as a
    dict without that key (arrays or tensors, or a tf.data dataset yielding such dicts) gets it added, so a
    model built for missing modalities trains and predicts on complete data as it is. Anything else is
    returned unchanged."""
    struct = input_struct(model)
    if not isinstance(struct, dict) or MODALITY_MASK not in struct:
        return x
    modalities = struct[MODALITY_MASK].shape[-1]
    if isinstance(x, dict):
        if MODALITY_MASK in x or not x:
            return x
        first = next(iter(x.values()))
        if is_array(first) and np.ndim(first):
            return {**x, MODALITY_MASK: np.ones((len(first), modalities), dtype="float32")}
        try:
            rows = keras.ops.shape(first)[0]
        except Exception:  # noqa: BLE001 - not a tensor: Keras reports the missing input itself
            return x
        return {**x, MODALITY_MASK: keras.ops.ones((rows, modalities), dtype="float32")}
    return _fill_dataset_mask(x, modalities)

def _fill_dataset_mask(dataset: Any, modalities: int) -> Any:
    """A batched tf.data dataset whose inputs are a dict without `modality_mask`, with all-ones masks added."""
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(dataset, tf.data.Dataset):
        return dataset
    spec = dataset.element_spec
    inputs = spec[0] if isinstance(spec, tuple) and spec else spec
    if not isinstance(inputs, dict) or MODALITY_MASK in inputs or not inputs:
        return dataset

    def add_mask(x):
        first = next(iter(x.values()))
        return {**x, MODALITY_MASK: tf.ones(tf.stack([tf.shape(first)[0], modalities]), dtype=tf.float32)}

    if isinstance(spec, tuple):
        return dataset.map(lambda x, *rest: (add_mask(x), *rest))
    return dataset.map(add_mask)

def unwrap_single_input(model: Any, x: Any) -> Any:
    """`{input_name: array}` for a one-input model becomes the bare array (what Keras expects; a dict
    works too but warns that its structure does not match); a fusion model's missing `modality_mask`
    becomes all ones (`fill_modality_mask`). Anything else is returned unchanged."""
    x = fill_modality_mask(model, x)
    struct = input_struct(model)
    if isinstance(x, dict) and len(x) == 1 and isinstance(struct, keras.KerasTensor):
        (key, value), = x.items()
        if key == struct.name and is_array(value):
            x = value
    return _text_as_tensors(model, x)

def _text_as_tensors(model: Any, x: Any) -> Any:
    """NumPy text arrays for the model's string inputs (a TextVectorization layer's, say) as TensorFlow string
    tensors: Keras's array adapter takes numbers only ("Invalid dtype: str352"). Nothing else changes."""
    texts = [(description, spec) for description, array, spec in named_inputs(model, x)
             if spec is not None and str(spec.dtype) == "string" and array.dtype.kind in "USO"]
    if not texts:
        return x
    if keras.backend.backend() != "tensorflow":
        raise TypeError(
            f"{texts[0][0]} is a string input: Keras feeds text to a model on the TensorFlow backend only "
            f"(this is {keras.backend.backend()!r}). Set KERAS_BACKEND=tensorflow, or turn the text into token ids "
            "before the model."
        )
    import tensorflow as tf

    names = {spec.name for _, spec in texts}

    def convert(value: Any, spec_name: str | None) -> Any:
        if spec_name in names and is_array(value) and value.dtype.kind in "USO":
            return tf.constant(value.astype(str))
        return value

    struct = input_struct(model)
    if isinstance(x, dict):
        return {key: convert(value, key) for key, value in x.items()}
    if isinstance(x, (list, tuple)) and isinstance(struct, (list, tuple)):
        return type(x)(convert(value, spec.name) for value, spec in zip(x, struct))
    return convert(x, getattr(struct, "name", None))
