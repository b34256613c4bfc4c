"""Deployment targets: the one place that says, per target, which formats, shapes and precision an export writes
and which runtime verifies each artifact (`export_model(..., target=...)`, `mtmm export --target NAME`).

| target        | writes                                                                  | verified in                       |
|---------------|-------------------------------------------------------------------------|-----------------------------------|
| `server`      | SavedModel, TFLite (flavours as asked), ONNX; batch as asked (dynamic)  | TF, LiteRT CPU, ONNX Runtime CPU  |
| `gpu-server`  | SavedModel, ONNX float32 and float16 (min/opt/max or static shapes in   | TF, ONNX Runtime CPU              |
|               | the manifest, for TensorRT / ONNX Runtime CUDA)                         |                                   |
| `android-gpu` | TFLite float32 and float16, static batch (default 1)                    | LiteRT CPU, and LiteRT's GPU      |
|               |                                                                         | accelerator where Vulkan runs     |
| `android-npu` | full-integer int8 TFLite with int8 inputs and outputs, static batch     | LiteRT CPU (quantization params   |
|               |                                                                         | from the manifest applied)        |
| `ios`         | static-shape ONNX and its ORT-format `.ort` twin; NNAPI / CoreML        | ONNX Runtime CPU (both files)     |
|               | verdicts of ONNX Runtime's mobile usability checker in the manifest     |                                   |
| `openvino`    | OpenVINO IR (`openvino/model.xml` + `.bin`), static or dynamic batch    | OpenVINO CPU, f32 inference       |

The GPU accelerator check (`android-gpu`) runs LiteRT's `CompiledModel` with `HardwareAccelerator.GPU`; on a
machine without a GPU, Mesa's lavapipe software Vulkan driver runs it (scripts/install_system_deps.sh). Lavapipe
proves op coverage and numerics, never speed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from typing import Any

import numpy as np

from mtmm_keras import _checks

DEFAULT_TARGET = "server"
ALL_FORMATS = ("saved_model", "tflite", "onnx")
# gpu-server: the batch range recorded for a dynamic batch (TensorRT optimisation profile min/opt/max)
GPU_SERVER_BATCHES = {"min": 1, "opt": 32, "max": 256}


# why android-gpu refuses int8 ('int8' and 'dynamic' TFLite flavours): said in the error, tested
GPU_INT8_REASON = (
    "LiteRT's GPU accelerator computes in float16/float32: it widens an int8 file's weights and fake-quantizes its "
    "activations, so an int8 file runs no faster there than float16 (which already halves the size) and only adds "
    "quantization error; the movies entries' int8 files crashed the accelerator (issue 19). Use 'float16' for a "
    "small GPU file, or target 'android-npu' for integer hardware (int8 inputs and outputs)")


@dataclasses.dataclass(frozen=True)
class Target:
    """One deployment target: what it writes and how it is verified."""

    name: str
    summary: str
    formats: tuple[str, ...] | None  # the writers it runs (None: as asked, `server`)
    quantize: tuple[str, ...] | None = None  # its default TFLite flavours (None: as asked)
    allowed_quantize: tuple[str, ...] | None = None  # flavours a caller may pick (None: any)
    static_batch: bool = False  # needs a fixed batch (default 1)
    onnx_float16: bool = False  # also an ONNX float16 twin
    int8_io: bool = False  # int8 TFLite with int8/uint8 inputs and outputs
    ort_format: bool = False  # an ORT-format twin of the ONNX, plus the mobile usability verdicts
    openvino_ir: bool = False  # the ONNX becomes OpenVINO IR (the ONNX itself is not kept)
    gpu_delegate: bool = False  # each TFLite file is run on LiteRT's GPU accelerator
    refused_quantize: dict[str, str] = dataclasses.field(default_factory=dict)  # flavour -> why the target refuses it
    verified_in: str = ""
    extra_modules: tuple[str, ...] = ()  # modules the target needs beyond the formats' own


TARGETS: dict[str, Target] = {
    "server": Target("server", "SavedModel + ONNX with a dynamic batch, TFLite as asked (the default)", None,
                     verified_in="TensorFlow, LiteRT (CPU), ONNX Runtime (CPU)"),
    "gpu-server": Target("gpu-server", "SavedModel, ONNX float32 and float16 with the shapes recorded (TensorRT / "
                         "ONNX Runtime CUDA ready)", ("saved_model", "onnx"), onnx_float16=True,
                         verified_in="TensorFlow, ONNX Runtime (CPU)", extra_modules=("onnxconverter_common",)),
    "android-gpu": Target("android-gpu", "TFLite float32 and float16 with a static batch, for LiteRT's GPU accelerator",
                          ("tflite",), quantize=("float32", "float16"), allowed_quantize=("float32", "float16"),
                          static_batch=True, gpu_delegate=True, refused_quantize=dict.fromkeys(
                              ("int8", "dynamic"), GPU_INT8_REASON),
                          verified_in="LiteRT (CPU) and LiteRT's GPU accelerator (where a Vulkan driver runs)"),
    "android-npu": Target("android-npu", "full-integer int8 TFLite with int8 inputs and outputs, static shapes",
                          ("tflite",), quantize=("int8",), allowed_quantize=("int8",), static_batch=True, int8_io=True,
                          verified_in="LiteRT (CPU), inputs quantized and outputs dequantized with the recorded params"),
    "ios": Target("ios", "static-shape ONNX and its ORT-format twin for ONNX Runtime Mobile (CoreML / NNAPI EPs)",
                  ("onnx",), static_batch=True, ort_format=True, verified_in="ONNX Runtime (CPU), both files"),
    "openvino": Target("openvino", "OpenVINO IR (.xml + .bin) converted from the ONNX", ("onnx",), openvino_ir=True,
                       verified_in="OpenVINO (CPU, f32 inference precision)", extra_modules=("openvino",)),
}


def get(name: Any) -> Target:
    """The `Target` called `name`; a ValueError naming the valid targets otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"`target` must be a string among {', '.join(map(repr, TARGETS))}; got {name!r}.")
    return TARGETS[_checks.one_of(name, "target", TARGETS)]


def resolve(target: Any, formats: Any, quantize: Any, batch_size: Any) -> tuple[tuple, tuple, Any]:
    """(formats, quantize, batch_size) an export to `target` writes, from what the caller asked (None: the target's
    choice; a target without TFLite files gets no flavours). Formats or flavours a target does not write are
    refused, naming the target and what it writes. Resolving the result again gives the same result."""
    spec = get(target)
    formats = None if formats is None else ((formats,) if isinstance(formats, str) else tuple(formats))
    quantize = None if quantize is None else ((quantize,) if isinstance(quantize, str) else tuple(quantize))
    if spec.formats is None:
        return formats if formats is not None else ALL_FORMATS, quantize if quantize is not None else ("float32",), batch_size
    if formats is not None and tuple(formats) != spec.formats:
        raise ValueError(f"`formats` {list(formats)} cannot be combined with `target` {spec.name!r}, which writes "
                         f"{list(spec.formats)}; leave `formats` out, or use target 'server' to choose them.")
    if quantize:
        if spec.allowed_quantize is None:
            raise ValueError(f"`quantize` {list(quantize)} cannot be combined with `target` {spec.name!r}: it writes no "
                             "TFLite file; leave `quantize` out.")
        refused = [q for q in quantize if q in spec.refused_quantize]
        if refused:
            raise ValueError(f"`quantize` {refused} cannot be combined with `target` {spec.name!r}, which writes the "
                             f"TFLite flavours {list(spec.allowed_quantize)}: {spec.refused_quantize[refused[0]]}.")
        wrong = [q for q in quantize if q not in spec.allowed_quantize]
        if wrong:
            raise ValueError(f"`quantize` {wrong} cannot be combined with `target` {spec.name!r}, which writes the "
                             f"TFLite flavours {list(spec.allowed_quantize)}.")
    if spec.static_batch and batch_size is None:
        batch_size = 1
    if "tflite" not in spec.formats:
        return spec.formats, (), batch_size
    return spec.formats, quantize or spec.quantize, batch_size


# --- ONNX float16 (gpu-server) -----------------------------------------------------------------------------------
def write_onnx_float16(src: str, dst: str) -> None:
    """`src` (float32 ONNX) with float16 weights and compute, float32 inputs and outputs (onnxconverter-common)."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(src)
    # tf2onnx's recorded intermediate types would go stale (a Cast to float32 keeps its output float32 while the
    # converter retypes the value as float16): drop them, the converter and ONNX Runtime infer them again
    del model.graph.value_info[:]
    model = float16.convert_float_to_float16(model, keep_io_types=True)
    # the graph's own casts to float32 (e.g. a 0/1 mask from a comparison) must now produce float16, except the
    # converter's casts back to float32 right before the graph outputs
    outputs = {value.name for value in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Cast" and not set(node.output) & outputs:
            for attribute in node.attribute:
                if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT:
                    attribute.i = onnx.TensorProto.FLOAT16
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def onnx_shapes(inputs: list, batch_size: int | None) -> dict[str, Any]:
    """The shapes a TensorRT / CUDA deployment builds for: static, or a min/opt/max batch profile per input."""
    shapes = {}
    for info in inputs:
        rest = list(info.shape[1:])
        if batch_size is not None:
            shapes[info.name] = {"static": [batch_size] + rest}
        else:
            shapes[info.name] = {k: [b] + rest for k, b in GPU_SERVER_BATCHES.items()}
    return shapes


# --- ORT format and the mobile usability checker (ios) ----------------------------------------------------------
def write_ort(onnx_path: str, out_dir: str) -> str:
    """Convert `onnx_path` to ORT format in `out_dir` (`python -m onnxruntime.tools.convert_onnx_models_to_ort`);
    returns the .ort path. The operator config it writes beside it is removed."""
    done = subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", onnx_path,
                           "--output_dir", out_dir, "--optimization_style", "Fixed"], capture_output=True, text=True, timeout=600)
    path = os.path.join(out_dir, os.path.splitext(os.path.basename(onnx_path))[0] + ".ort")
    if done.returncode != 0 or not os.path.isfile(path):
        raise ValueError(f"ORT-format conversion failed: {(done.stderr or done.stdout).strip()[-500:]}")
    for name in os.listdir(out_dir):
        if name.endswith(".config"):
            os.remove(os.path.join(out_dir, name))
    return path


_SECTIONS = ("NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram")


def mobile_usability(onnx_path: str) -> dict[str, Any]:
    """ONNX Runtime's mobile usability checker on `onnx_path`: per execution provider (NNAPI, CoreML
    NeuralNetwork, CoreML MLProgram) its verdict (YES: one partition with > 75 % of the nodes; MAYBE: one with
    50-75 %, or two with > 75 %; NO otherwise), the nodes it takes and the ops that block it. The checker reads op
    types (and prints per-op caveats it does not check); `export/mobile_graph.py` rewrites what it can first."""
    done = subprocess.run([sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability", onnx_path],
                          capture_output=True, text=True, timeout=600)
    text = done.stdout + done.stderr
    if done.returncode != 0:
        return {"error": text.strip()[-500:]}
    return parse_mobile_usability(text)


def parse_mobile_usability(text: str) -> dict[str, Any]:
    """The verdicts in the checker's log (see `mobile_usability`)."""
    verdicts: dict[str, Any] = {}
    chunks = re.split(r"Checking (NNAPI|CoreML NeuralNetwork|CoreML MLProgram)\b", text)
    for name, body in zip(chunks[1::2], chunks[2::2]):
        body = body.split("Checking if model will perform better", 1)[0]
        verdict = re.search(r"Model should perform well with .* as is: (YES|MAYBE|NO)", body)
        nodes = re.search(r"total of (\d+)/(\d+) nodes", body)
        blocked = re.search(r"Unsupported ops: ([^\n]*)", body)
        verdicts[name] = {
            "verdict": verdict.group(1) if verdict else "NO",
            "nodes_supported": f"{nodes.group(1)}/{nodes.group(2)}" if nodes else None,
            "unsupported_ops": sorted({op.split(":")[-1] for op in blocked.group(1).split(",") if op.strip()})
            if blocked else [],
        }
    return verdicts


# --- OpenVINO IR (openvino) --------------------------------------------------------------------------------------
def write_openvino(onnx_path: str, out_dir: str) -> str:
    """OpenVINO IR `out_dir/model.xml` (+ `model.bin`, float32 weights) converted from `onnx_path`."""
    import openvino as ov

    os.makedirs(out_dir, exist_ok=True)
    xml = os.path.join(out_dir, "model.xml")
    ov.save_model(ov.convert_model(onnx_path), xml, compress_to_fp16=False)
    return xml


def openvino_runner(path: str, output_names: dict[str, str] | None = None):
    """A callable running the OpenVINO IR in `path` (a folder or its model.xml) on CPU with f32 inference precision."""
    import openvino as ov

    xml = os.path.join(path, "model.xml") if os.path.isdir(path) else path
    compiled = ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = [output.get_any_name() for output in compiled.outputs]
    output_names = output_names or {}

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = compiled(inputs)
        return {output_names.get(n, n): np.asarray(result[i]) for i, n in enumerate(names)}

    return run


# --- int8 inputs and outputs (android-npu) -----------------------------------------------------------------------
def tflite_io_quantization(path: str) -> dict[str, dict[str, dict[str, Any]]]:
    """{"inputs"/"outputs": {name: {dtype, scale, zero_point}}} of the integer-quantized inputs and outputs of the
    TFLite file's serving signature (real = scale · (q − zero_point)); float ones are left out."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    params: dict[str, dict[str, dict[str, Any]]] = {"inputs": {}, "outputs": {}}
    for kind, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
        for name, detail in details.items():
            dtype = np.dtype(detail["dtype"])
            scales = detail["quantization_parameters"]["scales"]
            if dtype.kind in "iu" and len(scales):
                params[kind][name] = {"dtype": dtype.name, "scale": float(scales[0]),
                                      "zero_point": int(detail["quantization_parameters"]["zero_points"][0])}
    return params


def quantize_inputs(inputs: dict[str, np.ndarray], params: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """Real-valued `inputs` as the integers an int8-I/O TFLite takes: round(x / scale) + zero_point, clipped."""
    out = dict(inputs)
    for name, p in params.items():
        if name in out and np.asarray(out[name]).dtype.kind == "f":
            info = np.iinfo(p["dtype"])
            q = np.round(np.asarray(out[name], np.float32) / p["scale"]) + p["zero_point"]
            out[name] = np.clip(q, info.min, info.max).astype(p["dtype"])
    return out


def dequantize_outputs(outputs: dict[str, np.ndarray], params: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """Integer outputs as real values: scale · (q − zero_point)."""
    return {k: (p["scale"] * (v.astype(np.float32) - p["zero_point"]) if (p := params.get(k)) else v)
            for k, v in outputs.items()}


def describe() -> str:
    """One line per target: its name and what it writes (for `--help` and errors)."""
    return "\n".join(f"{t.name}: {t.summary}" for t in TARGETS.values())
