"""`export_model`: write SavedModel / TFLite / ONNX artifacts, verify each against Keras, then move them into place."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from typing import Any, Sequence

import keras
import numpy as np

from mtmm_keras import _checks, _extras, _hashing
from mtmm_keras import _output_folder as _output_folder_mod
from mtmm_keras.export import _model_io, onnx_writer, runtimes, saved_model_writer, targets, tflite_writer
from mtmm_keras.export import verify as checks
from mtmm_keras.export.report import ArtifactReport, ExportReport, ExportVerificationError

FORMATS = ("saved_model", "tflite", "onnx")
SAMPLE_ROWS = 32
HOLDOUT_ROWS = 1024
MIN_HOLDOUT_ROWS = 16  # fewer held-out rows than this cannot judge a quantized artifact
MANIFEST = "manifest.json"
# an export's manifest.json from before `written_by` was recorded still proves the folder is an export
LEGACY_MANIFEST_KEYS = ("model_name", "artifacts", "sample_batch", "tolerance")


def export_model(
    model: keras.Model,
    out_dir: str | os.PathLike,
    formats: Sequence[str] | None = None,
    quantize: Sequence[str] | None = None,
    representative_data: dict[str, np.ndarray] | np.ndarray | None = None,
    batch_size: int | None = None,
    verify: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    allow_flex: bool = False,
    opset: int = onnx_writer.DEFAULT_OPSET,
    atol: float = checks.FLOAT_ATOL,
    verbose: bool = True,
    overwrite: bool = False,
    per_tower: bool = False,
    target: str = targets.DEFAULT_TARGET,
) -> ExportReport:
    """Export `model` to every requested format and TFLite flavour, verify, and write `manifest.json`.

    `model` may be any Keras model: functional (one or several named inputs and outputs, list or dict forms),
    Sequential (with an `Input`, or built: `model.build((None, 4))`, called or fitted once) or subclassed (built or
    called once; its inputs are taken as float32). Inputs Keras named itself are called "input" / "input_<i>".
    A mixed-precision model (float16/bfloat16 compute) is exported from a float32 copy with the same weights,
    verified against that copy and recorded as such (`source_precision` in the manifest). String, ragged and
    sparse inputs are refused before anything is written. Without data, verification draws random rows in the
    range the layer reading each input expects (`random_inputs` in the manifest says how).

    Args:
        out_dir: a new or empty folder, or (with `overwrite=True`) an earlier export of this tool. A
            folder holding anything else is refused: nothing a user wrote is ever replaced.
        formats: any of "saved_model", "tflite", "onnx" (None: the target's; "server": all three).
        quantize: TFLite flavours among "float32", "float16", "dynamic" (dynamic-range int8) and
            "int8" (full integer, calibrated on `representative_data`). SavedModel and ONNX are float32.
            None: the target's ("server": float32).
        representative_data: `{input name: array [n, ...]}` (a bare array for a single-input model),
            typical inputs; calibrates int8. Without `validation_data`, its last fifth (never used for
            calibration) judges the quantized artifacts.
        batch_size: fixed batch for every artifact (None: dynamic batch).
        verify: run every artifact in its runtime and compare with Keras. With False the artifacts are
            written unchecked and the report and manifest say "unverified".
        validation_data: `(x, y)` held-out rows (y optional: a dict of labels by output); quantized
            classification outputs are then judged by accuracy against the labels (else by agreement
            with the float model) on these rows, which calibration never sees. A fused model's
            `modality_mask` input may be left out of both: it is then filled with presence patterns (every
            modality present, then each one missing in turn), so int8 calibration sees 0 and 1 and
            verification covers each missing modality.
        allow_flex: let TFLite use TensorFlow (Flex) ops; off by default, and a model that needs
            them is refused with the op names and the remedies.
        per_tower: joint-embedding models: also export each modality tower to `out_dir/towers/<modality>/`.
        target: the deployment target, which chooses formats, shapes and precision and the runtime that
            verifies each artifact (mtmm_keras.export.targets): "server" (the default), "gpu-server",
            "android-gpu", "android-npu", "ios", "openvino".
    Every argument is checked before the disk is touched. Artifacts are written to a hidden folder
    beside `out_dir` and swapped in with one rename only after every check passed; otherwise
    `ExportVerificationError` (or the conversion error) is raised and `out_dir` is left as it was.
    """
    formats, quantize, batch_size = targets.resolve(target, formats, quantize, batch_size)
    check_options(formats, quantize, batch_size, verify, atol, opset, target=target)
    plan = _plan(model, formats, quantize, representative_data, batch_size, validation_data, verify, per_tower, target)
    folder = _output_folder(out_dir, overwrite)
    with folder.staging() as staging, _write_errors_as_os_errors(staging):
        report = _export_into(model, staging, folder.path, plan, verify, allow_flex, opset, atol, verbose)
        if per_tower:
            report.tower_reports = _export_towers_into(model, staging, folder.path, "towers", plan, verify, allow_flex,
                                                       opset, atol, verbose)
            report.towers = {m: os.path.join("towers", m, MANIFEST) for m in report.tower_reports}
        if report.failed:
            raise ExportVerificationError(next((r for r in report.tower_reports.values() if r.failed), report))
        report.write_manifest(os.path.join(staging, MANIFEST))
        folder.commit(staging)
    if verbose:
        for each in (report, *report.tower_reports.values()):
            print(each.table())
    return report


def export_towers(model: keras.Model, out_dir: str | os.PathLike, formats: Sequence[str] | None = None,
                  quantize: Sequence[str] | None = None, representative_data: Any = None, batch_size: int | None = None,
                  verify: bool = True, validation_data: Any = None, allow_flex: bool = False,
                  opset: int = onnx_writer.DEFAULT_OPSET, atol: float = checks.FLOAT_ATOL, verbose: bool = True,
                  overwrite: bool = False, target: str = targets.DEFAULT_TARGET) -> dict[str, ExportReport]:
    """Export each modality tower of a joint-embedding model on its own, to `out_dir/<modality>/` (each with
    its manifest), in one atomic step; `out_dir` follows the same rules as in `export_model`.

    `representative_data` / `validation_data` given for the whole model are sliced per modality; `target` as in
    `export_model`.
    """
    formats, quantize, batch_size = targets.resolve(target, formats, quantize, batch_size)
    check_options(formats, quantize, batch_size, verify, atol, opset, target=target)
    plan = _plan(model, formats, quantize, representative_data, batch_size, validation_data, verify, per_tower=True,
                 target=target)
    folder = _output_folder(out_dir, overwrite)
    with folder.staging() as staging, _write_errors_as_os_errors(staging):
        reports = _export_towers_into(model, staging, folder.path, "", plan, verify, allow_flex, opset, atol, verbose)
        failed = [r for r in reports.values() if r.failed]
        if failed:
            raise ExportVerificationError(failed[0])
        verified = all(r.verified for r in reports.values())
        summary = {"written_by": _output_folder_mod.marker("export"), "model_name": model.name,
                   "towers": {m: os.path.join(m, MANIFEST) for m in reports}, "verified": verified,
                   "passed": all(r.passed for r in reports.values()) if verified else None}
        _output_folder_mod.write_json(os.path.join(staging, MANIFEST), summary)
        folder.commit(staging)
    if verbose:
        for report in reports.values():
            print(report.table())
    return reports


def _export_towers_into(model, staging, final_dir, subdir, plan, verify, allow_flex, opset, atol, verbose) -> dict[str, ExportReport]:
    """Each modality tower into `staging/subdir/<modality>/` with its own manifest (written only if it passed)."""
    reports = {}
    for modality, tower in _towers(model).items():
        relative = os.path.join(subdir, modality)
        os.makedirs(os.path.join(staging, relative))
        reports[modality] = report = _export_into(tower, os.path.join(staging, relative), final_dir / relative,
                                                  plan.for_tower(modality, tower), verify, allow_flex, opset, atol, verbose)
        if not report.failed:
            report.write_manifest(os.path.join(staging, relative, MANIFEST))
    return reports


def check_out_dir(out_dir: str | os.PathLike, overwrite: bool = False, argument: str = "out_dir") -> None:
    """Raise `OutputFolderError` unless `out_dir` may receive an export (new, empty, or an earlier export with
    `overwrite`); reads only. `export_model` runs the same check; the CLI calls it before loading anything."""
    _output_folder(out_dir, overwrite, argument)


def _output_folder(out_dir, overwrite, argument="out_dir") -> _output_folder_mod.OutputFolder:
    return _output_folder_mod.OutputFolder(out_dir, kind="export", owner_file=MANIFEST, overwrite=overwrite,
                                           argument=argument, legacy_keys=LEGACY_MANIFEST_KEYS, listed=_manifest_lists)


def _manifest_lists(manifest: dict, folder) -> set[str]:
    """The top-level names an export's manifest accounts for: its artifacts and tower folders."""
    artifacts = manifest.get("artifacts") if isinstance(manifest.get("artifacts"), list) else []
    towers = manifest.get("towers") if isinstance(manifest.get("towers"), dict) else {}
    paths = [a.get("path") for a in artifacts if isinstance(a, dict)] + list(towers.values())
    return _output_folder_mod.top_level_names(paths, folder)


@contextlib.contextmanager
def _write_errors_as_os_errors(staging: os.PathLike):
    """TensorFlow reports a full disk or a file-size limit while writing the SavedModel as its own OpError;
    turn the ones about files in the staging folder into OSError, which callers (and the CLI) handle."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as err:
        if str(staging) not in str(err):
            raise
        reason = str(err).rsplit(";", 1)[-1].strip()
        raise OSError(f"writing the export failed: {reason}") from err


def _towers(model: keras.Model) -> dict[str, keras.Model]:
    towers = {layer.name[: -len("_tower")]: layer for layer in model.layers
              if isinstance(layer, keras.Model) and layer.name.endswith("_tower")}
    if not towers:
        raise ValueError(f"Model {model.name!r} has no '<modality>_tower' sub-models, so it cannot be exported per "
                         "tower; per-tower export is for joint-embedding models (mk.builders.joint_embedding).")
    return towers


@dataclasses.dataclass
class _Plan:
    """Everything an export needs, checked before the disk is touched: formats, flavours and the rows used
    for the float check (`sample`), for int8 calibration, and for judging quantized artifacts (`holdout`)."""

    formats: tuple[str, ...]
    quantize: tuple[str, ...]
    batch_size: int | None
    sample: dict[str, np.ndarray]
    calibration: dict[str, np.ndarray] | None
    holdout: dict[str, np.ndarray]
    labels: dict[str, np.ndarray] | None
    holdout_source: str
    random_inputs: dict[str, str] | None = None  # how random rows were drawn, when some were (by input)
    target: str = targets.DEFAULT_TARGET

    def for_tower(self, modality: str, tower: keras.Model) -> "_Plan":
        """The same plan for one modality tower: each data dict sliced to that modality, no labels."""
        def pick(data):
            return None if data is None or modality not in data else {modality: data[modality]}

        sample, holdout = pick(self.sample), pick(self.holdout)
        return dataclasses.replace(
            self, sample=sample or _model_io.sample_inputs(tower), calibration=pick(self.calibration),
            holdout=holdout or _model_io.sample_inputs(tower, HOLDOUT_ROWS // 4, seed=1), labels=None,
            random_inputs=_model_io.sample_ranges(tower) if sample is None or holdout is None else None)


def _plan(model, formats=FORMATS, quantize=("float32",), representative_data=None, batch_size=None, validation_data=None,
          verify=True, per_tower=False, target=targets.DEFAULT_TARGET) -> _Plan:
    """Validate every argument (types, names, shapes, finiteness, installed runtimes) and pick the data rows."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"Export runs on the TensorFlow backend (this process uses {keras.backend.backend()!r}): save the model "
            "with model.save('m.keras') and run `mtmm export m.keras --out DIR`, or set KERAS_BACKEND=tensorflow."
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    formats, quantize = check_options(formats, quantize, batch_size, verify, target=target if formats is None else
                                      targets.DEFAULT_TARGET)
    if per_tower:
        _towers(model)
    infos = _model_io.input_infos(model)  # any Keras model; string/ragged inputs and unknown signatures refused here
    random_used = False
    representative = _named_inputs(infos, representative_data, "representative_data")
    holdout, labels, source = None, None, ""
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (1, 2):
            raise TypeError("`validation_data` must be a tuple (x, y) or (x,): inputs and optional labels by output, "
                            f"got {type(validation_data).__name__}.")
        holdout = _named_inputs(infos, validation_data[0], "validation_data[0]")
        labels = _labels(model, validation_data[1] if len(validation_data) == 2 else None, _rows_of(holdout))
        source = f"validation_data ({_rows_of(holdout)} rows)"
    int8 = "int8" in quantize and "tflite" in formats
    if int8 and representative is None:
        raise ValueError("`quantize` includes 'int8', which needs `representative_data` ({input name: array}) to calibrate.")
    calibration = representative if int8 else None
    if holdout is None and representative is not None:
        n = _rows_of(representative)
        if not int8:
            holdout, source = representative, f"representative_data ({n} rows; none used for calibration)"
        elif n // 5 >= MIN_HOLDOUT_ROWS:
            cut = n - n // 5
            calibration = {k: v[:cut] for k, v in representative.items()}
            holdout = {k: v[cut:] for k, v in representative.items()}
            source = f"representative_data rows {cut}..{n - 1}, never used for calibration (rows 0..{cut - 1})"
        else:
            raise ValueError(
                f"int8 is judged on rows calibration never sees: give `validation_data` (held-out rows), or at least "
                f"{5 * MIN_HOLDOUT_ROWS} rows of `representative_data` (its last fifth is held out); got {n} rows.")
    if holdout is None:
        holdout = _model_io.sample_inputs(model, HOLDOUT_ROWS // 4, seed=1)
        source = "random inputs (no held-out rows given: pass validation_data for a task-level check)"
        random_used = ("tflite" in formats and any(q != "float32" for q in quantize)) or targets.get(target).onnx_float16
    if validation_data is not None and calibration is not None:
        shared = len(_row_keys(holdout) & _row_keys(calibration))
        if shared:
            raise ValueError(f"`validation_data` shares {shared} rows with `representative_data`; quantized artifacts "
                             "must be judged on rows calibration never saw: pass held-out rows (e.g. the test split).")
    sample_from = holdout if validation_data is not None else representative
    if sample_from is None:
        sample_from = _model_io.sample_inputs(model, max(SAMPLE_ROWS, batch_size or 0))
        random_used = True
    if batch_size is not None:
        for name, data in (("representative_data", calibration), ("held-out data", holdout), ("sample data", sample_from)):
            if data is not None and _rows_of(data) < batch_size:
                raise ValueError(f"Need at least batch_size={batch_size} rows of {name}, got {_rows_of(data)}.")
    holdout = _first_rows(holdout, HOLDOUT_ROWS, batch_size)
    labels = None if labels is None else {k: v[: _rows_of(holdout)] for k, v in labels.items()}
    sample = _first_rows(sample_from, SAMPLE_ROWS, batch_size)
    return _Plan(formats, quantize, batch_size, sample, calibration, holdout, labels, source,
                 _model_io.sample_ranges(model) if random_used else None, target)


def check_options(formats: Any = None, quantize: Any = None, batch_size: Any = None, verify: Any = True,
                  atol: Any = checks.FLOAT_ATOL, opset: Any = onnx_writer.DEFAULT_OPSET,
                  target: Any = targets.DEFAULT_TARGET) -> tuple[tuple, tuple]:
    """Check the export options that need no model (target, formats, flavours, batch size, tolerances, installed
    converters and runtimes); returns (formats, quantize) as tuples (None: the target's). Reads nothing, writes
    nothing."""
    formats, quantize, batch_size = targets.resolve(target, formats, quantize, batch_size)
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    quantize = (quantize,) if isinstance(quantize, str) else tuple(quantize)
    for fmt in formats:
        _checks.one_of(fmt, "formats", FORMATS)
    for flavour in quantize:
        _checks.one_of(flavour, "quantize", tflite_writer.QUANTIZATIONS)
    if not formats:
        raise ValueError(f"`formats` is empty; choose from {FORMATS}.")
    if "tflite" in formats and not quantize:
        raise ValueError(f"`quantize` is empty; choose TFLite flavours from {tflite_writer.QUANTIZATIONS}.")
    if batch_size is not None:
        _checks.positive_int(batch_size, "batch_size")
    if not isinstance(verify, bool):
        raise TypeError(f"`verify` must be True or False, got {verify!r}.")
    _checks.non_negative_float(atol, "atol")
    _checks.positive_int(opset, "opset")
    _require_extras(formats, verify)
    _extras.require(targets.get(target).extra_modules, "export", f"exporting for target {target!r}")
    return formats, quantize


def _require_extras(formats, verify) -> None:
    """The converters (and, to verify, the runtimes) of the requested formats must be installed."""
    needed = {"tflite": ["ai_edge_litert"] if verify else [], "onnx": ["onnx", "tf2onnx"] + (["onnxruntime"] if verify else [])}
    _extras.require([module for fmt in formats for module in needed.get(fmt, [])], "export", f"exporting {', '.join(formats)}")


def _row_keys(data: dict[str, np.ndarray]) -> set[bytes]:
    """One key per row (the bytes of that row of every input), to find rows two data sets share."""
    names = sorted(data)
    return {b"".join(data[name][i].tobytes() for name in names) for i in range(_rows_of(data))}


def _rows_of(data: dict[str, np.ndarray]) -> int:
    return len(next(iter(data.values())))


def _first_rows(data, rows, batch_size):
    n = min(rows, _rows_of(data))
    if batch_size is not None:
        n = max(batch_size, (n // batch_size) * batch_size)
    return {k: v[:n] for k, v in data.items()}


def _named_inputs(infos, data, argument) -> dict[str, np.ndarray] | None:
    """`data` as {input name: array}, checked against the model's inputs: names, rows, shapes, dtype, finiteness."""
    if data is None:
        return None
    names = [info.name for info in infos]
    if not isinstance(data, dict):
        if len(names) != 1:
            raise ValueError(f"`{argument}` must be a dict keyed by the model's inputs {sorted(names)}, got {type(data).__name__}.")
        data = {names[0]: data}
    mask = _model_io.MODALITY_MASK
    if data and mask in names and set(data) == set(names) - {mask}:
        # a fused model's presence mask left out (as `fit`/`predict` allow): every modality present, then each
        # one missing in turn, so calibration and verification see both
        infos_by_name = {info.name: info for info in infos}
        data = {**data, mask: _model_io.presence_patterns(len(np.asarray(next(iter(data.values())))),
                                                          infos_by_name[mask].shape[-1], infos_by_name[mask].dtype)}
    if set(data) != set(names):
        raise ValueError(f"`{argument}` must be a dict keyed by the model's inputs {sorted(names)}, got {sorted(map(str, data))}.")
    out = {}
    for info in infos:
        out[info.name] = _input_array(data[info.name], info, f"{argument}[{info.name!r}]")
    rows = {name: len(array) for name, array in out.items()}
    if len(set(rows.values())) > 1:
        raise ValueError(f"`{argument}` inputs have different numbers of rows: {rows}; every input needs one row per example.")
    return out


def _input_array(value, info, argument) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{argument}` is not an array: {err}") from None
    expected = tuple(info.shape[1:])
    if array.ndim == 0 or len(array) == 0:
        raise ValueError(f"`{argument}` is empty; give at least one row of shape {list(expected)}.")
    if len(array.shape[1:]) != len(expected) or any(e is not None and e != g for e, g in zip(expected, array.shape[1:])):
        raise ValueError(f"`{argument}` has rows of shape {list(array.shape[1:])}; the model's input {info.name!r} "
                         f"takes rows of shape {[d if d is not None else 'any' for d in expected]}.")
    want = np.dtype(info.dtype)
    if array.dtype != want:
        whole = array.dtype.kind in "biu" or (array.dtype.kind == "f" and bool(np.all(np.isfinite(array) & (array == np.round(array)))))
        if array.dtype.kind not in "biuf" or (want.kind in "iu" and not whole):
            raise TypeError(f"`{argument}` has dtype {array.dtype}; the model's input {info.name!r} takes {want}"
                            + (" (whole numbers)" if want.kind in "iu" else "") + ".")
        array = array.astype(want)
    if want.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.argmin(np.isfinite(array).reshape(len(array), -1).all(axis=1)))
        raise ValueError(f"`{argument}` holds NaN or infinite values (first in row {bad}); export data must be finite.")
    return array


def _labels(model, y, rows) -> dict[str, np.ndarray] | None:
    if y is None:
        return None
    names = _model_io.output_names(model)
    if not isinstance(y, dict):
        if len(names) != 1:
            raise ValueError(f"`validation_data` labels must be a dict keyed by the model's outputs {names}, got {type(y).__name__}.")
        y = {names[0]: y}
    unknown = sorted(set(map(str, y)) - set(names))
    if unknown:
        raise ValueError(f"`validation_data` labels name unknown outputs {unknown}; the model's outputs are {names}.")
    labels = {}
    for name, value in y.items():
        value = np.asarray(value)
        if len(value) != rows:
            raise ValueError(f"`validation_data` labels {name!r} have {len(value)} rows, the inputs {rows}.")
        labels[name] = value
    return labels


def _predict(model, inputs):
    return {k: _as_numpy(v) for k, v in _model_io.call_with_named_inputs(model, inputs).items()}


def _as_numpy(tensor) -> np.ndarray:
    """float16/bfloat16 outputs (a mixed-precision source) as float32, everything else as it is."""
    array = np.asarray(keras.ops.convert_to_numpy(tensor))
    return array.astype(np.float32) if array.dtype.kind == "f" or array.dtype.name == "bfloat16" else array


def _export_into(model, staging, final_dir, plan: _Plan, verify, allow_flex, opset, atol, verbose) -> ExportReport:
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
        for flavour in quantize:
            step(f"converting TFLite {flavour}")
            calibration = None
            if plan.calibration is not None:
                calibration = lambda: _rows(plan.calibration, batch_size or 1)  # noqa: E731
            flatbuffer = tflite_writer.convert(saved_model_dir, flavour, calibration, allow_flex, int8_io=target.int8_io)
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
        input_names = [i.name for i in inputs]
        onnx_names = {onnx_writer.onnx_output_name(n, input_names): n for n in names}
        artifact = _artifact(path, "onnx", "float32", inputs, names)
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
    return ExportReport(final_dir, model.name, artifacts, _rows_of(plan.sample), tolerance,
                        holdout=plan.holdout_source if quantized_flavours and verify else None,
                        holdout_rows=_rows_of(plan.holdout) if quantized_flavours and verify else None,
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
        usability = {"mobile_usability": targets.mobile_usability(path)}
        onnx_artifact.deployment = usability
        twin(targets.write_ort(path, staging), "ort", "float32").deployment = usability
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
