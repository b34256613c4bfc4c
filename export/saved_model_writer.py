"""SavedModel writer: one `serving_default` signature with the model's input names and dict outputs."""

from __future__ import annotations

from typing import Sequence

import keras

from mtmm_keras.export._model_io import TensorInfo, call_with_named_inputs

ENDPOINT = "serve"


def tensor_specs(inputs: Sequence[TensorInfo]) -> dict:
    """`{name: tf.TensorSpec}` for the model's inputs: the SavedModel signature's input specs."""
    import tensorflow as tf

    return {info.name: tf.TensorSpec(shape=info.shape, dtype=info.dtype, name=info.name) for info in inputs}


def write_saved_model(model: keras.Model, path: str, inputs: Sequence[TensorInfo]) -> None:
    """Write `model` as a SavedModel whose `serving_default` (alias of "serve") maps named inputs to named outputs."""
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    specs = tensor_specs(inputs)

    @tf.function(input_signature=[specs])
    def serve(named_inputs):
        return call_with_named_inputs(model, named_inputs)

    archive.add_endpoint(ENDPOINT, serve)
    archive.write_out(path, verbose=False)
