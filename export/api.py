"""`export_model`: write SavedModel / TFLite / ONNX artifacts, verify each against Keras, then move them into place."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Sequence

import keras
import numpy as np
from mtmm_keras.export import (
    onnx_writer,
    targets,
)
from mtmm_keras.export import verify as checks
from mtmm_keras.export.pipeline import export_into
from mtmm_keras.export.planning import check_options, make_plan, towers
from mtmm_keras.export.report import (
    ExportReport,
    ExportVerificationError,
)

from mtmm_keras import _output_folder as _output_folder_mod

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
    plan = make_plan(model, formats, quantize, representative_data, batch_size, validation_data, verify, per_tower, target)
    folder = _output_folder(out_dir, overwrite)
    with folder.staging() as staging, _write_errors_as_os_errors(staging):
        report = export_into(model, staging, folder.path, plan, verify, allow_flex, opset, atol, verbose)
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
    plan = make_plan(model, formats, quantize, representative_data, batch_size, validation_data, verify, per_tower=True,
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
    for modality, tower in towers(model).items():
        relative = os.path.join(subdir, modality)
        os.makedirs(os.path.join(staging, relative))
        reports[modality] = report = export_into(tower, os.path.join(staging, relative), final_dir / relative,
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
