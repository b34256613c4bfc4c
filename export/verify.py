"""Compare an artifact's outputs with the Keras model's on the same batch (Optimum-style checks)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mtmm_keras.export.report import OutputCheck

FLOAT_ATOL = 1e-5
# float32 artifacts pass where every |Δ| ≤ atol + rtol·scale, scale = the largest |keras value| of the
# element's row (its example's output vector): a pure 1e-5 bound fails on large logits (1.05e-5 for
# |logits| ≈ 20 after a 3,136-wide Dense summed in another order by XNNPACK), and an element-wise rtol
# fails on a small logit beside large ones (2.1e-5 on a logit of −0.30 whose row reaches ±8, av_digits
# fusion with the image missing: the waveform's log-mel front end summed in another order by ONNX Runtime).
FLOAT_RTOL = 1e-5


def row_scale(reference: np.ndarray) -> np.ndarray:
    """The largest |value| of each example's output (broadcastable to `reference`); |value| for scalars."""
    magnitude = np.abs(reference)
    if magnitude.ndim < 2:
        return magnitude
    return magnitude.reshape(len(magnitude), -1).max(axis=1).reshape((-1,) + (1,) * (magnitude.ndim - 1))
# quantized artifacts: largest allowed drop in accuracy (with labels) or agreement with the float model; on fewer
# than 1/ACCURACY_DROP rows one changed prediction is already more than that, so the bound is one row there
ACCURACY_DROP = 0.01


def accuracy_drop_limit(rows: int) -> float:
    """The largest accuracy / agreement drop a quantized artifact may show on `rows` examples:
    `ACCURACY_DROP`, or one example's worth (1/rows) when that is coarser (e.g. 67 test rows: 1.5 points)."""
    return max(ACCURACY_DROP, 1.0 / max(int(rows), 1))
# quantized regression outputs: largest relative error ‖q − f‖ / ‖f‖ per flavour
RELATIVE_ERROR = {"float16": 1e-2, "dynamic": 5e-2, "int8": 0.1}
# quantized embedding/feature outputs (last axis ≥ EMBEDDING_MIN_DIM): smallest mean cosine(q, f) per flavour
MIN_COSINE = {"float16": 0.999, "dynamic": 0.99, "int8": 0.98}
EMBEDDING_MIN_DIM = 8


def output_kinds(model: keras.Model) -> dict[str, tuple[str, bool]]:
    """For each output: ("categorical" | "binary" | "continuous", from_logits).

    Read from the model's own tasks (`MultiTaskModel.task_configs`, kept in its config, so uncompiled and
    reloaded models are judged right); else from the compiled losses; anything else (embeddings, towers,
    attention weights) is continuous."""
    from mtmm_keras.tasks import Task

    task_configs = getattr(model, "task_configs", ())
    if task_configs:
        losses = {config["name"]: Task.from_config(config).keras_loss() for config in task_configs}
    else:
        losses = getattr(model, "loss", None)
    kinds = {}
    for name in _names(model):
        loss = losses.get(name) if isinstance(losses, dict) else None
        class_name = type(loss).__name__ if loss is not None else ""
        config = loss.get_config() if hasattr(loss, "get_config") else {}
        from_logits = bool(config.get("from_logits", False))
        if "CategoricalCrossentropy" in class_name:
            kinds[name] = ("categorical", from_logits)
        elif "BinaryCrossentropy" in class_name or "BinaryFocal" in class_name:
            kinds[name] = ("binary", from_logits)
        else:
            kinds[name] = ("continuous", False)
    return kinds


def _names(model: keras.Model) -> list[str]:
    from mtmm_keras.export import _model_io

    return _model_io.output_names(model)  # any Keras model (Sequential and subclassed through their functional view)


def _predicted_class(values: np.ndarray, kind: str, from_logits: bool) -> np.ndarray:
    if kind == "categorical":
        return values.argmax(axis=-1)
    return (values > (0.0 if from_logits else 0.5)).astype(int).reshape(len(values), -1)


def check_output(
    name: str,
    reference: np.ndarray,
    got: np.ndarray | None,
    quantization: str,
    kind: tuple[str, bool],
    labels: Any = None,
    atol: float = FLOAT_ATOL,
) -> OutputCheck:
    """Shape, then value check: |Δ| ≤ atol + rtol·(row scale) for float32; task metric (or fidelity) for quantized flavours."""
    check = OutputCheck(name=name, expected_shape=list(reference.shape), shape=None if got is None else list(got.shape))
    if got is None:
        check.reason = "missing output"
        return check
    if tuple(got.shape) != tuple(reference.shape):
        check.reason = f"shape {tuple(got.shape)} does not match the Keras model's {tuple(reference.shape)}"
        return check
    got = got.astype(np.float32)
    if not np.all(np.isfinite(got)):
        check.reason = "artifact produced NaN/inf"
        return check
    diff = np.abs(got - reference)
    check.max_abs_error = float(diff.max()) if diff.size else 0.0
    check.max_rel_error = float((diff / np.maximum(np.abs(reference), 1e-6)).max()) if diff.size else 0.0
    if quantization == "float32":
        check.passed = bool(np.all(diff <= atol + FLOAT_RTOL * row_scale(reference)))
        if not check.passed:
            check.reason = (f"values not close enough: max |Δ| {check.max_abs_error:.3e} "
                            f"(allowed: atol {atol:.0e} + rtol {FLOAT_RTOL:.0e}·the row's largest |value|)")
        return check
    task, from_logits = kind
    if task in ("categorical", "binary"):
        ref_cls, got_cls = _predicted_class(reference, task, from_logits), _predicted_class(got, task, from_logits)
        if labels is not None:
            y = np.asarray(labels)
            y = y.argmax(-1) if task == "categorical" and y.ndim == reference.ndim and y.shape[-1] > 1 else y.reshape(ref_cls.shape)
            check.metric, check.keras_value, check.artifact_value = "accuracy", float((ref_cls == y).mean()), float((got_cls == y).mean())
        else:
            check.metric, check.keras_value, check.artifact_value = "agreement", 1.0, float((got_cls == ref_cls).mean())
        limit = accuracy_drop_limit(ref_cls.size)
        check.passed = check.keras_value - check.artifact_value <= limit + 1e-9
        if not check.passed:
            check.reason = f"{check.metric} drops by {check.keras_value - check.artifact_value:.3f} (> {limit:g})"
        return check
    if reference.ndim == 2 and reference.shape[-1] >= EMBEDDING_MIN_DIM:
        norms = np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1), 1e-12)
        cosine = float(np.mean(np.sum(got * reference, axis=1) / norms))
        limit = MIN_COSINE.get(quantization, 0.98)
        check.metric, check.keras_value, check.artifact_value = "cosine", 1.0, cosine
        check.passed = cosine >= limit
        if not check.passed:
            check.reason = f"mean cosine to the float embeddings {cosine:.4f} < {limit} required for {quantization}"
        return check
    relative = float(np.linalg.norm(got - reference) / max(np.linalg.norm(reference), 1e-12))
    limit = RELATIVE_ERROR.get(quantization, 0.1)
    check.metric, check.keras_value, check.artifact_value = "rel.err", 0.0, relative
    check.passed = relative <= limit
    if not check.passed:
        check.reason = f"relative error {relative:.3f} > {limit} allowed for {quantization}"
    return check
