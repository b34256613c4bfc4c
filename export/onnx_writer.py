"""ONNX writer via tf2onnx (Keras's own path), with one shared symbolic batch dimension."""

from __future__ import annotations

import warnings
from typing import Sequence

import keras

from mtmm_keras.export._model_io import TensorInfo, call_with_named_inputs
from mtmm_keras.export.saved_model_writer import tensor_specs

DEFAULT_OPSET = 17
BATCH_SYMBOL = "batch"
OUTPUT_SUFFIX = "_output"


def onnx_output_name(name: str, input_names: Sequence[str]) -> str:
    """ONNX needs distinct value names: an output named like an input (joint-embedding models map
    modality "text" to output "text") is called "text_output" in the ONNX graph."""
    return name + OUTPUT_SUFFIX if name in input_names else name


def write_onnx(model: keras.Model, path: str, inputs: Sequence[TensorInfo], opset: int = DEFAULT_OPSET) -> None:
    """Convert `model` to ONNX at `path` with the model's input/output names and a `batch` dim shared by all."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    specs = tensor_specs(inputs)
    input_names = [info.name for info in inputs]

    @tf.function(input_signature=[specs], autograph=False)  # as the SavedModel writer's (saved_model_writer.py)
    def serve(named_inputs):
        outputs = call_with_named_inputs(model, named_inputs)
        return {onnx_output_name(name, input_names): value for name, value in outputs.items()}

    with warnings.catch_warnings():  # tf2onnx touches deprecated numpy aliases
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        _patch_tf2onnx_for_numpy2()
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=[specs], opset=opset,
                                                 custom_rewriter=[keep_selects_as_where])
    dynamic_batch = inputs[0].shape[0] is None
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dynamic_batch and dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = BATCH_SYMBOL
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


def keep_selects_as_where(graph, nodes):
    """tf2onnx rewriter: every TF select (`ops.where`: Select/SelectV2) becomes an ONNX `Where`. tf2onnx otherwise
    lowers a float select to Cast(c)·x + Cast(not c)·y, where NaN·0 = NaN and inf·0 = NaN: a NaN or inf in a
    masked modality (which `ops.where` selects away) would reach every output row. Marks the nodes as tf2onnx's
    own TFLite select rewriter does (`handles_nan`); returns the nodes unchanged otherwise."""
    for node in nodes:
        if node.type in ("Select", "SelectV2"):
            node.set_attr("handles_nan", True)
    return nodes


def _patch_tf2onnx_for_numpy2() -> None:
    """Apply Keras's numpy-2 fix for tf2onnx's constant folding (an internal Keras module). Without it (a
    Keras that moved it) the conversion runs unpatched: most graphs convert the same, and every artifact
    is verified against the Keras model anyway, so a difference cannot pass unnoticed."""
    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:
        warnings.warn("keras.src.export.tf2onnx_lib is missing in this Keras: converting to ONNX without its numpy-2 "
                      "patch for tf2onnx (the artifact is still verified).", RuntimeWarning, stacklevel=3)
        return
    patch_tf2onnx()
