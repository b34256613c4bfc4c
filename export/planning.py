"""Export planning: every argument of an export checked (types, names, shapes, finiteness, the runtimes installed)
and the rows chosen for the float check, int8 calibration and judging quantized artifacts, before the disk is
touched (`make_plan` → `Plan`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
from mtmm_keras.export import (
    _model_io,
    onnx_writer,
    targets,
    tflite_writer,
)
from mtmm_keras.export import verify as checks

from mtmm_keras import _checks, _extras

FORMATS = ("saved_model", "tflite", "onnx")


SAMPLE_ROWS = 32


HOLDOUT_ROWS = 1024


MIN_HOLDOUT_ROWS = 16  # fewer held-out rows than this cannot judge a quantized artifact


def towers(model: keras.Model) -> dict[str, keras.Model]:
    """A joint-embedding model's `<modality>_tower` sub-models by modality (what per-tower export writes)."""
    towers = {layer.name[: -len("_tower")]: layer for layer in model.layers
              if isinstance(layer, keras.Model) and layer.name.endswith("_tower")}
    if not towers:
        raise ValueError(f"Model {model.name!r} has no '<modality>_tower' sub-models, so it cannot be exported per "
                         "tower; per-tower export is for joint-embedding models (mk.builders.joint_embedding).")
    return towers


@dataclasses.dataclass
class Plan:
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

    def for_tower(self, modality: str, tower: keras.Model) -> "Plan":
        """The same plan for one modality tower: each data dict sliced to that modality, no labels."""
        def pick(data):
            return None if data is None or modality not in data else {modality: data[modality]}

        sample, holdout = pick(self.sample), pick(self.holdout)
        return dataclasses.replace(
            self, sample=sample or _model_io.sample_inputs(tower), calibration=pick(self.calibration),
            holdout=holdout or _model_io.sample_inputs(tower, HOLDOUT_ROWS // 4, seed=1), labels=None,
            random_inputs=_model_io.sample_ranges(tower) if sample is None or holdout is None else None)


def make_plan(model, formats=FORMATS, quantize=("float32",), representative_data=None, batch_size=None, validation_data=None,
          verify=True, per_tower=False, target=targets.DEFAULT_TARGET) -> Plan:
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
        towers(model)
    infos = _model_io.input_infos(model)  # any Keras model; string/ragged inputs and unknown signatures refused here
    random_used = False
    representative = _named_inputs(infos, representative_data, "representative_data")
    holdout, labels, source = None, None, ""
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (1, 2):
            raise TypeError("`validation_data` must be a tuple (x, y) or (x,): inputs and optional labels by output, "
                            f"got {type(validation_data).__name__}.")
        holdout = _named_inputs(infos, validation_data[0], "validation_data[0]")
        labels = _labels(model, validation_data[1] if len(validation_data) == 2 else None, rows_of(holdout))
        source = f"validation_data ({rows_of(holdout)} rows)"
    int8 = "int8" in quantize and "tflite" in formats
    if int8 and representative is None:
        raise ValueError("`quantize` includes 'int8', which needs `representative_data` ({input name: array}) to calibrate.")
    calibration = representative if int8 else None
    if holdout is None and representative is not None:
        n = rows_of(representative)
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
            if data is not None and rows_of(data) < batch_size:
                raise ValueError(f"Need at least batch_size={batch_size} rows of {name}, got {rows_of(data)}.")
    holdout = _first_rows(holdout, HOLDOUT_ROWS, batch_size)
    labels = None if labels is None else {k: v[: rows_of(holdout)] for k, v in labels.items()}
    sample = _first_rows(sample_from, SAMPLE_ROWS, batch_size)
    return Plan(formats, quantize, batch_size, sample, calibration, holdout, labels, source,
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
    return {b"".join(data[name][i].tobytes() for name in names) for i in range(rows_of(data))}


def rows_of(data: dict[str, np.ndarray]) -> int:
    """The number of rows of a {input name: array} dict (its arrays share the first axis)."""
    return len(next(iter(data.values())))


def _first_rows(data, rows, batch_size):
    n = min(rows, rows_of(data))
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
