"""TFLite (LiteRT) converter in four flavours, built-in ops only unless Flex is explicitly allowed."""

from __future__ import annotations

import re
import warnings
from typing import Any, Callable, Iterable

from mtmm_keras._int8 import FLOAT_SCOPE

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
# int8: ops under a name scope of this name (e.g. `with keras.name_scope(FLOAT_SCOPE):` inside a layer's call)
# stay float32 while the rest is quantized; for ops that per-tensor int8 wrecks, such as a power spectrum
# before its log (mtmm_keras.encoders.LogMelSpectrogram; mtmm_keras/_int8.py). TF numbers repeated scopes: "<name>_1", ...
_FLOAT_SCOPE_PATTERN = re.compile(rf"(^|/){FLOAT_SCOPE}(_\d+)?/")
FLEX_REMEDY = (
    "Remedies: build the layer that uses them from LiteRT built-in ops; for recurrent layers export with a fixed "
    "batch (`batch_size=1` / `--batch-size 1`), unroll them (the exporter already unrolls Keras LSTM/GRU layers) or "
    "use a conv text encoder (mk.encoders.text(..., kind='conv')). Pass allow_flex=True (--allow-flex) only if your "
    "runtime links the Flex delegate."
)


class FlexOpsError(ValueError):
    """The model needs TensorFlow (Flex / SELECT_TF_OPS) ops that standard LiteRT runtimes cannot run."""


def saved_model_converter(saved_model_dir: str) -> Any:
    """A TFLite converter for the SavedModel's `serving_default`, for `convert(..., converter=)` to reuse across
    flavours: creating one loads the whole SavedModel in Python (movies_mmoe: about 4 s each time)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])


def convert(
    saved_model_dir: str,
    quantization: str,
    representative_data: Callable[[], Iterable[dict[str, Any]]] | None = None,
    allow_flex: bool = False,
    int8_io: bool = False,
    converter: Any = None,
) -> bytes:
    """Convert the SavedModel's `serving_default` signature to a .tflite flatbuffer and check its ops.

    `converter`: one from `saved_model_converter(saved_model_dir)`, reused across calls (each call sets every
    option it uses); a new one is made when it is None, and for int8 with float scopes, whose quantization
    debugger changes the converter it is given.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be among {QUANTIZATIONS}, got {quantization!r}.")
    if quantization == "int8" and representative_data is None:
        raise ValueError("int8 quantization needs `representative_data` (a few hundred typical input rows) to calibrate.")
    keep_float = quantization == "int8" and _has_float_scope(saved_model_dir)
    if keep_float and int8_io:
        raise ValueError(f"int8 input/output is not available for a model with ops kept in float (name scope "
                         f"{FLOAT_SCOPE!r}, e.g. a LogMelSpectrogram front end); export with float input/output.")
    if converter is None or keep_float:
        converter = saved_model_converter(saved_model_dir)
    # every option set, to the converter's defaults where this flavour does not use it
    converter.optimizations = []
    converter.target_spec = tf.lite.TargetSpec()
    converter.representative_dataset = None
    converter.inference_input_type = converter.inference_output_type = tf.float32
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
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
            flatbuffer = _int8_keeping_float_scopes(converter) if keep_float else converter.convert()
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


def float32_gather_tables(flatbuffer: bytes) -> bytes:
    """`flatbuffer` (a float16 file) with each GATHER's lookup table as a float32 constant instead of a float16
    constant behind a DEQUANTIZE: LiteRT's GPU accelerator refuses that GATHER ("Input / output dtype mismatch"),
    the CPU interpreter computes the same numbers either way (the float16 values, widened). The other weights stay
    float16. Returns `flatbuffer` unchanged when no GATHER reads a dequantized table."""
    import flatbuffers
    import numpy as np

    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(flatbuffer), 0))
    names = op_names(flatbuffer)
    changed = False
    for subgraph in model.subgraphs or []:
        operators = subgraph.operators or []
        producer = {index: op for op in operators for index in (op.outputs if op.outputs is not None else [])}
        readers: dict[int, int] = {}
        for op in operators:
            for index in op.inputs if op.inputs is not None else []:
                readers[index] = readers.get(index, 0) + 1
        for op in list(operators):
            if names[op.opcodeIndex] != "GATHER":
                continue
            table = int(op.inputs[0])
            dequantize = producer.get(table)
            if dequantize is None or names[dequantize.opcodeIndex] != "DEQUANTIZE":
                continue
            source = subgraph.tensors[int(dequantize.inputs[0])]
            data = model.buffers[source.buffer].data if source.buffer else None
            if source.type != schema.TensorType.FLOAT16 or data is None or len(data) == 0 or readers.get(table) != 1:
                continue
            values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float16).astype("<f4")
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(values.tobytes(), np.uint8)
            model.buffers.append(buffer)
            subgraph.tensors[table].buffer = len(model.buffers) - 1  # the DEQUANTIZE's output becomes the constant
            operators.remove(dequantize)
            if readers.get(int(dequantize.inputs[0])) == 1:  # the float16 copy is read by nothing else now
                model.buffers[source.buffer].data = None
            changed = True
    if not changed:
        return flatbuffer
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def has_float_scope(saved_model_dir: str) -> bool:
    """Whether the SavedModel has ops under a FLOAT_SCOPE name scope (which stay float32 in an int8 file)."""
    return _has_float_scope(saved_model_dir)


def _has_float_scope(saved_model_dir: str) -> bool:
    """Whether any node of the SavedModel's graph (functions included) lies under a FLOAT_SCOPE name scope."""
    import os

    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        graph = meta_graph.graph_def
        names = [node.name for node in graph.node]
        names += [node.name for function in graph.library.function for node in function.node_def]
        if any(_FLOAT_SCOPE_PATTERN.search(name) for name in names):
            return True
    return False


def _int8_keeping_float_scopes(converter) -> bytes:
    """Full-integer int8 except the ops whose outputs are named under FLOAT_SCOPE, which stay float32
    (DEQUANTIZE/QUANTIZE at their borders): TF's selective quantization (QuantizationDebugger's denylist)."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                         debug_dataset=converter.representative_dataset)
    float_nodes = float_scope_outputs(debugger.calibrated_model)
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=float_nodes)
    return debugger.get_nondebug_quantized_model()


def float_scope_outputs(flatbuffer: bytes) -> list[str]:
    """Output tensor names of the ops under a FLOAT_SCOPE name scope. A fused op's name lists every fused TF
    node, ';'-separated: the op counts if any of them is in the scope."""
    names = set()
    for subgraph, op in _operators(flatbuffer):
        for index in op.outputs if op.outputs is not None else []:
            name = _text(subgraph.tensors[index].name)
            if any(_FLOAT_SCOPE_PATTERN.search(part) for part in name.split(";")):
                names.add(name)
    return sorted(names)


def tensor_types(flatbuffer: bytes) -> list[tuple[str, str, str]]:
    """(op name, output tensor name, its type: FLOAT32, INT8, ...) for every op of every subgraph."""
    schema = _schema()
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    ops = op_names(flatbuffer)
    rows = []
    for subgraph, op in _operators(flatbuffer):
        for index in op.outputs if op.outputs is not None else []:
            tensor = subgraph.tensors[index]
            rows.append((ops[op.opcodeIndex], _text(tensor.name), type_names.get(tensor.type, str(tensor.type))))
    return rows


def _schema() -> Any:
    """The TFLite flatbuffer schema (generated Python classes): LiteRT's published module first, then TensorFlow's
    internal copy (tensorflow.lite.python is not public API); a clear ImportError when neither is there."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise ImportError(
                "Reading a .tflite file's ops needs the TFLite schema, which ai-edge-litert ships "
                "(ai_edge_litert.schema_py_generated): pip install 'mtmm-keras[export]'."
            ) from None
    return schema


def _builtin_code(code: Any) -> int:
    """An operator code's builtin op (schema_util.get_builtin_code_from_operator_code: the larger of the int32
    field and the deprecated int8 one, since codes above 127 only fit the former)."""
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _operators(flatbuffer: bytes):
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(flatbuffer), 0))
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            yield subgraph, op


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def op_names(flatbuffer: bytes) -> list[str]:
    """Names of the operator codes in a .tflite flatbuffer (custom ops by their custom code)."""
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(flatbuffer), 0))
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = []
    for code in model.operatorCodes or []:
        builtin = _builtin_code(code)
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append(code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode))
        else:
            names.append(builtin_names.get(builtin, str(builtin)))
    return names


def flex_ops(flatbuffer: bytes) -> list[str]:
    """The TensorFlow (Flex) ops a TFLite flatbuffer needs, sorted; empty when it runs on built-in ops only."""
    return sorted(name for name in op_names(flatbuffer) if name.startswith("Flex"))
