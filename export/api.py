"""`export_model`: write SavedModel / TFLite / ONNX artifacts, verify each against Keras, then move them into place."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from typing import Any, Sequence

import keras
import numpy as np

from mtmm_keras import _checks
from mtmm_keras.export import _model_io, onnx_writer, runtimes, saved_model_writer, tflite_writer
from mtmm_keras.export import verify as checks
from mtmm_keras.export.report import ArtifactReport, ExportReport, ExportVerificationError

FORMATS = ("saved_model", "tflite", "onnx")
SAMPLE_ROWS = 32
HOLDOUT_ROWS = 1024


def export_model(
    model: keras.Model,
    out_dir: str,
    formats: Sequence[str] = FORMATS,
    quantize: Sequence[str] = ("float32",),
    representative_data: dict[str, np.ndarray] | None = None,
    batch_size: int | None = None,
    verify: bool = True,
    validation_data: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None,
    allow_flex: bool = False,
    opset: int = onnx_writer.DEFAULT_OPSET,
    atol: float = checks.FLOAT_ATOL,
    verbose: bool = True,
) -> ExportReport:
    """Export `model` to every requested format and TFLite flavour, verify, and write `manifest.json`.

    Args:
        formats: any of "saved_model", "tflite", "onnx".
        quantize: TFLite flavours among "float32", "float16", "dynamic" (dynamic-range int8) and
            "int8" (full integer, calibrated on `representative_data`). SavedModel and ONNX are float32.
        representative_data: `{input name: array [n, ...]}`, typical inputs; calibrates int8 and
            supplies the verification batch.
        batch_size: fixed batch for every artifact (None: dynamic batch).
        validation_data: `(x, y)` dicts with labels; quantized classification outputs are then
            judged by accuracy against the labels (else by agreement with the float model).
        allow_flex: let TFLite use TensorFlow (Flex) ops; off by default, and a model that needs
            them is refused with the op names and the remedies.
    Artifacts are written to a temporary folder beside `out_dir` and moved into place only after
    every check passed; otherwise `ExportVerificationError` (or the conversion error) is raised and
    `out_dir` is left exactly as it was.
    """
    formats, quantize = _check_arguments(model, formats, quantize, representative_data, batch_size)
    final_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(final_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(final_dir)}.tmp-", dir=parent)
    try:
        report = _export_into(
            model, staging, final_dir, formats, quantize, representative_data, batch_size, verify,
            validation_data, allow_flex, opset, atol, verbose,
        )
        if not report.passed:
            raise ExportVerificationError(report)
        report.write_manifest(os.path.join(staging, "manifest.json"))
        _move_into_place(staging, final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if verbose:
        print(report.table())
    return report


def export_towers(model: keras.Model, out_dir: str, **kwargs: Any) -> dict[str, ExportReport]:
    """Export each modality tower of a joint-embedding model on its own, to `out_dir/<modality>/`.

    `representative_data` / `validation_data` given for the whole model are sliced per modality.
    """
    towers = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name.endswith("_tower")]
    if not towers:
        raise ValueError(f"Model {model.name!r} has no '<modality>_tower' sub-models; build it with mk.builders.joint_embedding.")
    reports = {}
    for tower in towers:
        modality = tower.name[: -len("_tower")]
        tower_kwargs = dict(kwargs)
        if kwargs.get("representative_data") is not None:
            tower_kwargs["representative_data"] = {modality: kwargs["representative_data"][modality]}
        tower_kwargs.pop("validation_data", None)
        reports[modality] = export_model(tower, os.path.join(out_dir, modality), **tower_kwargs)
    return reports


def _check_arguments(model, formats, quantize, representative_data, batch_size):
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"Export runs on the TensorFlow backend (this process uses {keras.backend.backend()!r}): save the model "
            "with model.save('m.keras') and run `mtmm export m.keras --out DIR`, or set KERAS_BACKEND=tensorflow."
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    quantize = (quantize,) if isinstance(quantize, str) else tuple(quantize)
    for fmt in formats:
        _checks.one_of(fmt, "formats", FORMATS)
    for flavour in quantize:
        _checks.one_of(flavour, "quantize", tflite_writer.QUANTIZATIONS)
    if not formats:
        raise ValueError(f"`formats` is empty; choose from {FORMATS}.")
    if batch_size is not None:
        _checks.positive_int(batch_size, "batch_size")
    if "int8" in quantize and "tflite" in formats and representative_data is None:
        raise ValueError("`quantize` includes 'int8', which needs `representative_data` ({input name: array}) to calibrate.")
    if representative_data is not None:
        expected = {info.name for info in _model_io.input_infos(model)}
        if not isinstance(representative_data, dict) or set(representative_data) != expected:
            got = sorted(representative_data) if isinstance(representative_data, dict) else type(representative_data).__name__
            raise ValueError(f"`representative_data` must be a dict keyed by the model's inputs {sorted(expected)}, got {got}.")
    return formats, quantize


def _predict(model, inputs):
    return {k: keras.ops.convert_to_numpy(v) for k, v in _model_io.call_with_named_inputs(model, inputs).items()}


def _sample_batch(model, representative_data, validation_data, batch_size, rows=SAMPLE_ROWS):
    rows = rows if batch_size is None else max(batch_size, (rows // batch_size) * batch_size)
    labels = None
    if validation_data is not None:
        x, labels = validation_data
        source = x
    elif representative_data is not None:
        source = representative_data
    else:
        return _model_io.sample_inputs(model, rows), None
    n = len(next(iter(source.values())))
    rows = min(rows, n) if batch_size is None else (min(rows, n) // batch_size) * batch_size
    if rows == 0:
        raise ValueError(f"Need at least batch_size={batch_size} rows of sample data, got {n}.")
    sample = {k: np.asarray(v[:rows]) for k, v in source.items()}
    if labels is not None:
        labels = {k: np.asarray(v[:rows]) for k, v in labels.items()} if isinstance(labels, dict) else None
    return sample, labels


def _export_into(model, staging, final_dir, formats, quantize, representative_data, batch_size, verify,
                 validation_data, allow_flex, opset, atol, verbose) -> ExportReport:
    import tensorflow as tf  # noqa: F401  (loaded once here, not per writer)

    graph_model = _model_io.export_clone(model)
    inputs = _model_io.input_infos(graph_model, batch_size)
    names = _model_io.output_names(model)
    sample, _ = _sample_batch(model, representative_data, validation_data, batch_size)
    reference = _predict(model, sample)
    # quantized flavours are judged on a larger held-out slice (task metric), float32 on the sample (max |Δ|)
    holdout, labels = _sample_batch(model, representative_data, validation_data, batch_size, rows=HOLDOUT_ROWS)
    holdout_reference = _predict(model, holdout) if any(q != "float32" for q in quantize) else None
    kinds = checks.output_kinds(model)
    stem = model.name
    artifacts: list[ArtifactReport] = []

    def step(label: str):
        if verbose:
            print(f"  {label} ...", flush=True)

    saved_model_dir = os.path.join(staging, "saved_model")
    if "saved_model" in formats or "tflite" in formats:
        step("writing SavedModel")
        saved_model_writer.write_saved_model(graph_model, saved_model_dir, inputs)
        if "saved_model" in formats:
            artifacts.append(_artifact(saved_model_dir, "saved_model", "float32", inputs, names))
    if "tflite" in formats:
        for flavour in quantize:
            step(f"converting TFLite {flavour}")
            calibration = None
            if representative_data is not None:
                calibration = lambda: _rows(representative_data, batch_size or 1)  # noqa: E731
            flatbuffer = tflite_writer.convert(saved_model_dir, flavour, calibration, allow_flex)
            path = os.path.join(staging, f"{stem}.{flavour}.tflite")
            with open(path, "wb") as f:
                f.write(flatbuffer)
            artifacts.append(_artifact(path, "tflite", flavour, inputs, names))
    if "onnx" in formats:
        step("converting ONNX")
        path = os.path.join(staging, f"{stem}.onnx")
        onnx_writer.write_onnx(graph_model, path, inputs, opset=opset)
        onnx_names = {onnx_writer.onnx_output_name(n, [i.name for i in inputs]): n for n in names}
        artifact = _artifact(path, "onnx", "float32", inputs, names)
        artifact.outputs = [dict(o, onnx_name=onnx_writer.onnx_output_name(o["name"], [i.name for i in inputs])) for o in artifact.outputs]
        artifacts.append(artifact)
    if "saved_model" not in formats and os.path.isdir(saved_model_dir):
        shutil.rmtree(saved_model_dir)

    for artifact in artifacts:
        if not verify:
            continue
        step(f"verifying {artifact.format}/{artifact.quantization}")
        artifact.verified = True
        try:
            run = _runner(artifact, batch_size, onnx_names if artifact.format == "onnx" else None)
            quantized = artifact.quantization != "float32"
            inputs, expected = (holdout, holdout_reference) if quantized else (sample, reference)
            got = run(inputs)
        except Exception as err:  # the deployment runtime itself rejects the artifact
            artifact.error = f"{type(err).__name__} in the {artifact.format} runtime: {str(err).splitlines()[0][:300]}"
            artifact.path = os.path.join(final_dir, os.path.relpath(artifact.path, staging))
            continue
        artifact.names_match = set(got) == set(names)
        for name in names:
            artifact.checks.append(
                checks.check_output(name, expected[name], got.get(name), artifact.quantization, kinds[name],
                                    None if labels is None or not quantized else labels.get(name), atol)
            )
        one = {k: v[:1] for k, v in sample.items()} if batch_size in (None, 1) else {k: v[:batch_size] for k, v in sample.items()}
        artifact.latency_ms_batch1 = runtimes.median_latency_ms(lambda: run(one)) if batch_size in (None, 1) else None
        artifact.path = os.path.join(final_dir, os.path.relpath(artifact.path, staging))
    for artifact in artifacts:
        if not verify:
            artifact.path = os.path.join(final_dir, os.path.relpath(artifact.path, staging))
    tolerance = {
        "float32_atol": atol,
        "float32_rtol": checks.FLOAT_RTOL,
        "accuracy_drop": checks.ACCURACY_DROP,
        "relative_error": checks.RELATIVE_ERROR,
        "min_cosine": checks.MIN_COSINE,
    }
    return ExportReport(final_dir, model.name, artifacts, len(next(iter(sample.values()))), tolerance)


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
    else:
        run = runtimes.onnx_runner(path, onnx_names)
    return runtimes.in_batches(run, batch_size)


def _artifact(path, fmt, quantization, inputs, names) -> ArtifactReport:
    return ArtifactReport(
        path=path,
        format=fmt,
        quantization=quantization,
        size_bytes=_size(path),
        sha256=_sha256(path),
        inputs=[i.as_dict() for i in inputs],
        outputs=[{"name": n} for n in names],
    )


def _files(path):
    if os.path.isdir(path):
        for root, _, files in sorted(os.walk(path)):
            for name in sorted(files):
                yield os.path.join(root, name)
    else:
        yield path


def _size(path) -> int:
    return sum(os.path.getsize(f) for f in _files(path))


def _sha256(path) -> str:
    """sha256 of the file, or of a folder's files (relative path + content, in sorted order)."""
    digest = hashlib.sha256()
    for f in _files(path):
        if os.path.isdir(path):
            digest.update(os.path.relpath(f, path).encode())
        with open(f, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _move_into_place(staging: str, final_dir: str) -> None:
    """Swap the verified folder in; an earlier export at `final_dir` is replaced only now."""
    backup = None
    if os.path.exists(final_dir):
        backup = f"{final_dir}.old-{int(time.time() * 1000)}"
        os.rename(final_dir, backup)
    os.rename(staging, final_dir)
    if backup:
        shutil.rmtree(backup, ignore_errors=True)
