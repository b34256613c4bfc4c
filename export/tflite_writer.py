"""TFLite (LiteRT) converter in four flavours, built-in ops only unless Flex is explicitly allowed."""

from __future__ import annotations

import re
import warnings
from typing import Any, Callable, Iterable

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
FLEX_REMEDY = (
    "Remedies: build the layer that uses them from LiteRT built-in ops; for recurrent layers export with a fixed "
    "batch (`batch_size=1` / `--batch-size 1`), unroll them (the exporter already unrolls Keras LSTM/GRU layers) or "
    "use a conv text encoder (mk.encoders.text(..., kind='conv')). Pass allow_flex=True (--allow-flex) only if your "
    "runtime links the Flex delegate."
)


class FlexOpsError(ValueError):
    """The model needs TensorFlow (Flex / SELECT_TF_OPS) ops that standard LiteRT runtimes cannot run."""


def convert(
    saved_model_dir: str,
    quantization: str,
    representative_data: Callable[[], Iterable[dict[str, Any]]] | None = None,
    allow_flex: bool = False,
    int8_io: bool = False,
) -> bytes:
    """Convert the SavedModel's `serving_default` signature to a .tflite flatbuffer and check its ops."""
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be among {QUANTIZATIONS}, got {quantization!r}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if representative_data is None:
            raise ValueError("int8 quantization needs `representative_data` (a few hundred typical input rows) to calibrate.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({k: v for k, v in row.items()} for row in representative_data())
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    if allow_flex:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    try:
        with warnings.catch_warnings():  # the int8 calibrator uses tf.lite.Interpreter, which warns about itself
            warnings.simplefilter("ignore", UserWarning)
            flatbuffer = converter.convert()
    except Exception as err:  # the converter raises ConverterError / RuntimeError with the op names inside
        message = str(err)
        needed = sorted(set(re.findall(r"'tf\.(\w+)' op", message)) or set(re.findall(r"\btf\.([A-Z]\w+)", message)))
        if needed and not allow_flex:
            raise FlexOpsError(
                f"TFLite {quantization}: the graph needs TensorFlow ops that are not LiteRT built-ins: "
                f"{', '.join(needed)}. {FLEX_REMEDY}"
            ) from None
        if needed:
            raise FlexOpsError(f"TFLite {quantization}: these ops are neither LiteRT built-ins nor Flex ops: {', '.join(needed)}.") from None
        raise ValueError(f"TFLite {quantization} conversion failed: {message.splitlines()[0][:500]}") from None
    flex = flex_ops(flatbuffer)
    if flex and not allow_flex:
        raise FlexOpsError(f"TFLite {quantization}: the artifact uses Flex ops {flex}. {FLEX_REMEDY}")
    return flatbuffer


def op_names(flatbuffer: bytes) -> list[str]:
    """Names of the operator codes in a .tflite flatbuffer (custom ops by their custom code)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python import schema_util

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(flatbuffer), 0))
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = []
    for code in model.operatorCodes or []:
        builtin = schema_util.get_builtin_code_from_operator_code(code)
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append(code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode))
        else:
            names.append(builtin_names.get(builtin, str(builtin)))
    return names


def flex_ops(flatbuffer: bytes) -> list[str]:
    return sorted(name for name in op_names(flatbuffer) if name.startswith("Flex"))
