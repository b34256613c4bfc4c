"""The export pipeline for one planned model: write each artifact into the staging folder, run it in its own
runtime (LiteRT CPU and GPU, ONNX Runtime, OpenVINO, TensorFlow) and check it against the Keras model."""

from __future__ import annotations

import os
import shutil

import keras
import numpy as np
from mtmm_keras.export import (
    _model_io,
    mobile_graph,
    onnx_writer,
    runtimes,
    saved_model_writer,
    targets,
    tflite_writer,
)
from mtmm_keras.export import verify as checks
from mtmm_keras.export.planning import Plan, rows_of
from mtmm_keras.export.report import (
    ArtifactReport,
    ExportReport,
)

from mtmm_keras import _hashing
from mtmm_keras import _output_folder as _output_folder_mod


def _predict(model, inputs):
    return {k: _as_numpy(v) for k, v in _model_io.call_with_named_inputs(model, inputs).items()}


def _as_numpy(tensor) -> np.ndarray:
    """float16/bfloat16 outputs (a mixed-precision source) as float32, everything else as it is."""
    array = np.asarray(keras.ops.convert_to_numpy(tensor))
    return array.astype(np.float32) if array.dtype.kind == "f" or array.dtype.name == "bfloat16" else array


def export_into(model, staging, final_dir, plan: Plan, verify, allow_flex, opset, atol, verbose) -> ExportReport:
    """Write every artifact of `plan` into `staging`, verify each in its runtime, and return the report (paths as
    they will be under `final_dir` once the caller swaps the folder in)."""
    import tensorflow as tf  # noqa: F401  (loaded once here, not per writer)

    final_dir = str(final_dir)
    formats, quantize, batch_size = plan.formats, plan.quantize, plan.batch_size
    view = _model_io.export_view(model)  # any Keras model as a functional model with named inputs and outputs
    low_precision = _model_io.low_precision_policies(model)
    # unrolled recurrent layers; float32 compute for a mixed-precision model; with a static batch, embedding
    # lookups with 1-D indices (LiteRT's GPU accelerator refuses a GATHER with 2-D indices)
    clone = _model_io.export_clone(model, flat_embeddings=batch_size is not None)
    graph_model = view if clone is model else _model_io.export_view(clone)
    # a mixed-precision model's artifacts are float32: they are checked against its float32 copy (same weights)
    reference_model = graph_model if low_precision else view
    inputs = _model_io.input_infos(graph_model, batch_size)
    names = _model_io.output_names(view)
    target = targets.get(plan.target)
    kinds = checks.output_kinds(model)
    stem = model.name
    artifacts: list[ArtifactReport] = []

    def step(label: str):
        _output_folder_mod.raise_if_interrupted()
        if verbose:
            print(f"  {label} ...", flush=True)

    saved_model_dir = os.path.join(staging, "saved_model")
    if "saved_model" in formats or "tflite" in formats:
        step("writing SavedModel")
        saved_model_writer.write_saved_model(graph_model, saved_model_dir, inputs)
        if "saved_model" in formats:
            artifacts.append(_artifact(saved_model_dir, "saved_model", "float32", inputs, names))
    if "tflite" in formats:
        if target.int8_io and tflite_writer.has_float_scope(saved_model_dir):
            raise ValueError(
                f"`target` {target.name!r} needs every op in int8 with int8 inputs and outputs, but {model.name!r} keeps "
                f"ops in float32 (the {tflite_writer.FLOAT_SCOPE!r} name scope, e.g. the LogMelSpectrogram audio front "
                "end, whose power spectrum int8 cannot represent): an NPU would run them on the CPU. Export it for "
                "'android-gpu' (float16), or for 'server' with quantize=['int8'] (float inputs and outputs).")
        converter = tflite_writer.saved_model_converter(saved_model_dir)  # one SavedModel load for every flavour
        for flavour in quantize:
            step(f"converting TFLite {flavour}")
            calibration = None
            if plan.calibration is not None:
                calibration = lambda: _rows(plan.calibration, batch_size or 1)  # noqa: E731
            flatbuffer = tflite_writer.convert(saved_model_dir, flavour, calibration, allow_flex, int8_io=target.int8_io,
                                               converter=converter)
            if target.gpu_delegate and flavour == "float16":  # the GPU accelerator takes no float16 GATHER table
                flatbuffer = tflite_writer.float32_gather_tables(flatbuffer)
            path = os.path.join(staging, f"{stem}.{flavour}.tflite")
            with open(path, "wb") as f:
                f.write(flatbuffer)
            artifacts.append(artifact := _artifact(path, "tflite", flavour, inputs, names))
            if target.int8_io:
                _record_io_quantization(artifact, targets.tflite_io_quantization(path))
    onnx_names = {}
    if "onnx" in formats:
        step("converting ONNX")
        path = os.path.join(staging, f"{stem}.onnx")
        onnx_writer.write_onnx(graph_model, path, inputs, opset=opset)
        rewrites = None
        if target.ort_format:  # ops the NNAPI / CoreML EPs do not take, rewritten (same outputs; verified below)
            step("rewriting ONNX for the NNAPI / CoreML execution providers")
            rewrites = mobile_graph.rewrite_file(path)
        input_names = [i.name for i in inputs]
        onnx_names = {onnx_writer.onnx_output_name(n, input_names): n for n in names}
        artifact = _artifact(path, "onnx", "float32", inputs, names)
        if rewrites is not None:
            artifact.deployment = {"mobile_rewrites": rewrites}
        artifact.outputs = [dict(o, onnx_name=onnx_writer.onnx_output_name(o["name"], input_names)) for o in artifact.outputs]
        artifacts.append(artifact)
        artifacts.extend(_target_twins(target, artifact, staging, stem, inputs, batch_size, step))
        if target.openvino_ir:  # the IR replaces the ONNX it was converted from
            os.remove(path)
            artifacts.remove(artifact)
    if "saved_model" not in formats and os.path.isdir(saved_model_dir):
        shutil.rmtree(saved_model_dir)

    quantized_flavours = any(a.quantization != "float32" for a in artifacts)
    source_precision = None
    if low_precision:
        source_precision = {"dtype_policies": low_precision, "artifacts": "float32",
                            "verified_against": "a float32 copy of the model with the same weights"}
    if verify:
        reference = _predict(reference_model, plan.sample)
        holdout_reference = _predict(reference_model, plan.holdout) if quantized_flavours else None
        if low_precision:
            source = _predict(view, plan.sample)
            source_precision["max_abs_difference_float32_copy_vs_source"] = max(
                (float(np.max(np.abs(reference[n] - source[n]))) for n in names if reference[n].size), default=0.0)
        for artifact in artifacts:
            step(f"verifying {artifact.format}/{artifact.quantization}")
            quantized = artifact.quantization != "float32"
            rows, expected = (plan.holdout, holdout_reference) if quantized else (plan.sample, reference)
            _verify(artifact, plan.batch_size, rows, expected, plan.labels if quantized else None, kinds, names,
                    onnx_names, plan.sample, atol)
            if target.gpu_delegate and artifact.format == "tflite" and artifact.error is None:
                step(f"running {artifact.format}/{artifact.quantization} on LiteRT's GPU accelerator")
                _check_gpu_delegate(artifact, plan.sample, batch_size or 1, staging)
    for artifact in artifacts:
        artifact.path = os.path.join(final_dir, os.path.relpath(artifact.path, staging))
    tolerance = {
        "float32_atol": atol,
        "float32_rtol": checks.FLOAT_RTOL,
        "accuracy_drop": checks.ACCURACY_DROP,
        "relative_error": checks.RELATIVE_ERROR,
        "min_cosine": checks.MIN_COSINE,
    }
    return ExportReport(final_dir, model.name, artifacts, rows_of(plan.sample), tolerance,
                        holdout=plan.holdout_source if quantized_flavours and verify else None,
                        holdout_rows=rows_of(plan.holdout) if quantized_flavours and verify else None,
                        source_precision=source_precision, random_inputs=plan.random_inputs if verify else None,
                        target=target.name)


def _target_twins(target, onnx_artifact, staging, stem, inputs, batch_size, step) -> list[ArtifactReport]:
    """The artifacts a target derives from the float32 ONNX: its float16 twin (gpu-server), its ORT-format twin
    with the mobile usability verdicts (ios) or OpenVINO IR (openvino); each records what the target needs."""
    twins = []
    path, names = onnx_artifact.path, [o["name"] for o in onnx_artifact.outputs]

    def twin(twin_path, fmt, quantization):
        artifact = _artifact(twin_path, fmt, quantization, inputs, names)
        artifact.outputs = [dict(o) for o in onnx_artifact.outputs]
        twins.append(artifact)
        return artifact

    if target.onnx_float16:
        step("converting ONNX float16")
        shapes = targets.onnx_shapes(inputs, batch_size)
        onnx_artifact.deployment = {"shapes": shapes}
        twin_path = os.path.join(staging, f"{stem}.float16.onnx")
        targets.write_onnx_float16(path, twin_path)
        twin(twin_path, "onnx", "float16").deployment = {"shapes": shapes}
    if target.ort_format:
        step("converting ONNX to ORT format; checking mobile usability")
        usability = {**(onnx_artifact.deployment or {}), "mobile_usability": targets.mobile_usability(path)}
        onnx_artifact.deployment = usability
        twin(targets.write_ort(path, staging), "ort", "float32").deployment = dict(usability)
    if target.openvino_ir:
        step("converting ONNX to OpenVINO IR")
        targets.write_openvino(path, os.path.join(staging, "openvino"))
        twin(os.path.join(staging, "openvino"), "openvino", "float32").deployment = {
            "inference_precision": "f32", "device": "CPU", "converted_from": "ONNX (not kept)"}
    return twins


def _check_gpu_delegate(artifact: ArtifactReport, sample: dict[str, np.ndarray], batch: int, work_dir: str) -> None:
    """Run the TFLite file on LiteRT's GPU accelerator (gpu_delegate.check, a child process) on one batch; record
    coverage and differences from the CPU interpreter, and fail the artifact if it falls off the GPU, crashes
    it or differs at enforced fp32. Where no Vulkan driver runs, the report says so and nothing fails."""
    from mtmm_keras.export import gpu_delegate

    result = gpu_delegate.check(artifact.path, {k: v[:batch] for k, v in sample.items()}, work_dir)
    artifact.deployment = {**(artifact.deployment or {}), "gpu_delegate": result}
    artifact.error = gpu_delegate.failure(result, artifact.quantization)


def _record_io_quantization(artifact: ArtifactReport, params: dict) -> None:
    """Integer inputs/outputs of an int8-I/O TFLite: their dtype in the artifact's specs, their scale and zero
    point in `deployment` (the verifier quantizes inputs and dequantizes outputs with them)."""
    artifact.deployment = {"io_quantization": params}
    for kind in ("inputs", "outputs"):
        for spec in getattr(artifact, kind):
            if spec["name"] in params[kind]:
                spec["dtype"] = params[kind][spec["name"]]["dtype"]


def _verify(artifact, batch_size, rows, expected, labels, kinds, names, onnx_names, sample, atol) -> None:
    """Run `artifact` in its own runtime on `rows` and record one check per output against `expected`."""
    artifact.verified = True
    try:
        run = _runner(artifact, batch_size, onnx_names if artifact.format in ("onnx", "ort", "openvino") else None)
        got = run(rows)
    except Exception as err:  # the deployment runtime itself rejects the artifact
        # ... unless the user stopped us: a Ctrl-C inside TensorFlow can come out as any error (a TypeError from
        # tf.function's argument binding); reporting it as a failed verification would blame the artifact
        _output_folder_mod.raise_if_interrupted()
        artifact.error = f"{type(err).__name__} in the {artifact.format} runtime: {str(err).splitlines()[0][:300]}"
        return
    artifact.names_match = set(got) == set(names)
    for name in names:
        artifact.checks.append(
            checks.check_output(name, expected[name], got.get(name), artifact.quantization, kinds[name],
                                None if labels is None else labels.get(name), atol)
        )
    one = {k: v[: batch_size or 1] for k, v in sample.items()}
    artifact.latency_ms_batch1 = runtimes.median_latency_ms(lambda: run(one)) if batch_size in (None, 1) else None


def _rows(data: dict[str, np.ndarray], batch: int):
    n = len(next(iter(data.values())))
    for i in range(0, n - batch + 1, batch):
        yield {k: np.asarray(v[i : i + batch]) for k, v in data.items()}


def _runner(artifact: ArtifactReport, batch_size, onnx_names):
    path = artifact.path
    if artifact.format == "saved_model":
        run = runtimes.saved_model_runner(path)
    elif artifact.format == "tflite":
        run = runtimes.tflite_runner(path)
        params = (artifact.deployment or {}).get("io_quantization")
        if params:  # int8 inputs and outputs: real values in and out through the recorded scale and zero point
            run = _with_io_quantization(run, params)
    elif artifact.format == "openvino":
        run = targets.openvino_runner(path, onnx_names)
    else:  # onnx, ort
        run = runtimes.onnx_runner(path, onnx_names)
    return runtimes.in_batches(run, batch_size)


def _with_io_quantization(run, params):
    return lambda x: targets.dequantize_outputs(run(targets.quantize_inputs(x, params["inputs"])), params["outputs"])


def _artifact(path, fmt, quantization, inputs, names) -> ArtifactReport:
    return ArtifactReport(
        path=path,
        format=fmt,
        quantization=quantization,
        size_bytes=_size(path),
        sha256=_hashing.sha256(path),
        inputs=[i.as_dict() for i in inputs],
        outputs=[{"name": n} for n in names],
    )


def _size(path) -> int:
    return sum(os.path.getsize(f) for f in _hashing.files(path))
