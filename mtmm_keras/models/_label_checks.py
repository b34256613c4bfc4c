"""Checks of in-memory labels per task before Keras sees them: dtype, shape against the head, class ids against the
head's width, the task's missing-label marker (which rows count), and a joint embedding's pairwise labels."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mtmm_keras.models._arrays import check_dtype, flat_arrays, is_array, scalar


def _loss_kind(loss: Any) -> str | None:
    """'sparse', 'binary' or 'dense' for Keras's built-in losses; None for any other (custom) loss."""
    if isinstance(loss, str):
        name = loss
    elif isinstance(loss, keras.losses.Loss):
        if not type(loss).__module__.startswith("keras."):
            return None
        name = type(loss).__name__
        if name == "LossFunctionWrapper":
            name = getattr(getattr(loss, "fn", None), "__name__", "")
    elif callable(loss) and str(getattr(loss, "__module__", "")).startswith("keras."):
        name = getattr(loss, "__name__", "")
    else:
        return None
    name = name.lower().replace("_", "")
    if not name or name == "ctc":  # CTC labels are sequences of their own length
        return None
    if "sparse" in name:
        return "sparse"
    if name.startswith("binary"):
        return "binary"
    return "dense"

def _task_losses(model: Any, names: list[str]) -> dict[str, Any] | None:
    loss = getattr(model, "loss", None)
    if loss is None:
        return None
    if isinstance(loss, dict):
        return {name: loss[name] for name in names if name in loss and loss[name] is not None}
    if isinstance(loss, (list, tuple)):
        return {name: l for name, l in zip(names, loss) if l is not None}
    return {name: loss for name in names}

def _present_rows(model: Any, task: str, array: np.ndarray, loss: Any) -> np.ndarray | None:
    """Rows where the task's label is present (its `Task.missing_label` marker, see
    `mtmm_keras.models._task_losses`), or None when every row counts (no marker for this task)."""
    from mtmm_keras.models._task_losses import missing_rule, weighting_of

    if weighting_of(model) is None:
        return None  # only MultiTaskModel's per-task losses (set by a weighting) mask missing labels
    if not getattr(model, "task_configs", None) or array.ndim == 0 or array.size == 0 or array.dtype.kind not in "biuf":
        return None
    setting = next((c.get("missing_label", "auto") for c in model.task_configs if c.get("name") == task), "auto")
    nan, value = missing_rule(setting, loss)
    missing = np.zeros(array.shape, dtype=bool)
    if nan and array.dtype.kind == "f":
        missing |= np.isnan(array)
    if value is not None:
        missing |= array == value
    missing_rows = missing.reshape(len(array), -1).all(axis=1)
    if not missing_rows.any():
        return None
    return ~missing_rows

def _check_task_labels(task: str, array: np.ndarray, output: Any, loss: Any) -> None:
    kind = _loss_kind(loss)
    if kind is None or len(output.shape) != 2 or output.shape[1] is None:
        return
    units = int(output.shape[1])
    if kind == "sparse":
        if not (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
            raise ValueError(
                f"Labels for task {task!r} have shape {array.shape}, but its loss takes integer class ids of "
                f"shape [rows] or [rows, 1] (values 0..{units - 1}). For one-hot labels use "
                "loss='categorical_crossentropy', or pass `labels.argmax(axis=-1)`."
            )
        if array.dtype.kind == "f" and np.any(array != np.floor(array)):
            raise ValueError(
                f"Labels for task {task!r} must be whole class ids 0..{units - 1}; some are fractional "
                "(they would be truncated)."
            )
        if array.size and (array.min() < 0 or array.max() >= units):
            bad = (array < 0) | (array >= units)
            first = int(np.argmax(bad.reshape(len(array), -1).any(axis=1)))
            raise ValueError(
                f"Labels for task {task!r} must be class ids 0..{units - 1} (the task has {units} units); "
                f"got values from {scalar(array.min())!r} to {scalar(array.max())!r} ({int(bad.sum())} out of range, first at row {first})."
            )
        return
    got = tuple(array.shape[1:])
    if len(got) == 0 and units == 1:
        got = (1,)
    if got != (units,):
        hint = ""
        if array.ndim == 1 and units > 1:
            hint = (" Integer class ids need loss='sparse_categorical_crossentropy'; otherwise pass "
                    f"[rows, {units}] labels (e.g. one-hot).")
        raise ValueError(
            f"Labels for task {task!r} have shape {array.shape}, but the task has {units} unit(s): expected shape "
            f"[rows, {units}]{' or [rows]' if units == 1 else ''}, got {list(array.shape)}. They would be "
            f"broadcast against the {units} outputs and trained on silently.{hint}"
        )
    if kind == "binary" and array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"Labels for task {task!r} must lie in [0, 1] for its binary cross-entropy loss; got values from "
            f"{scalar(array.min())!r} to {scalar(array.max())!r}."
        )

def named_labels(model: Any, y: Any, present: dict[str, np.ndarray] | None = None) -> list[tuple[str, np.ndarray]]:
    """(description, array) for each numpy label array; label structure and per-task checks on the way."""
    outputs = getattr(model, "output", None) if not getattr(model, "_is_joint_embedding", False) else None
    if isinstance(outputs, (list, tuple)) and len(outputs) > 1:
        output_names = list(getattr(model, "output_names", None) or [])
        if len(output_names) == len(outputs):  # a list-output model: its tasks by Keras's output names
            outputs = dict(zip(output_names, outputs))
    if isinstance(outputs, dict):
        names = list(outputs)
        losses = _task_losses(model, names)
        if isinstance(y, (list, tuple)) and len(y) == len(names) and all(is_array(v) for v in y):
            y = dict(zip(names, y))  # labels in output order: checked (missing labels too) as the dict
        if is_array(y) and len(names) > 1:
            raise ValueError(
                f"This model has {len(names)} tasks {names}: pass `y` as a dict {{task name: labels}}, "
                f"got a single array of shape {y.shape}."
            )
        if is_array(y):
            y = {names[0]: y}
        if isinstance(y, dict):
            unknown = [key for key in y if key not in outputs]
            if unknown:
                raise ValueError(
                    f"`y` has labels for unknown task(s) {unknown}; the model's tasks are {names}."
                )
            required = sorted(losses) if losses is not None else []
            missing = [name for name in required if name not in y]
            if missing:
                raise ValueError(
                    f"`y` has no labels for task(s) {missing}; every task with a loss needs labels. "
                    f"Got labels for {list(y)}, the model's tasks are {names}."
                )
            named = []
            for key, value in y.items():
                if not is_array(value):
                    continue
                check_dtype(f"Labels for task {key!r}", value, "numbers")
                description = f"labels of task {key!r}"
                if losses is not None and key in losses:
                    rows = _present_rows(model, key, value, losses[key])
                    if rows is not None and present is not None:
                        present[description] = rows
                    # values are checked on the rows where the label is present; missing ones are markers
                    _check_task_labels(key, value if rows is None else value[rows], outputs[key], losses[key])
                named.append((description, value))
            return named
        if isinstance(y, (list, tuple)) and len(y) != len(names):
            raise ValueError(
                f"`y` is a list of {len(y)} arrays but the model has {len(names)} tasks {names}; "
                "pass a dict {task name: labels}."
            )
    named = [(f"labels {name}" if name != "y" else "labels `y`", value) for name, value in flat_arrays(y, "y")]
    for description, value in named:
        check_dtype(description, value, "numbers")
    return named

def check_pairwise_labels(model: Any, y: Any) -> None:
    """A pairwise loss (CosineEmbeddingLoss) needs one label per row, each 1 (similar) or −1 (dissimilar)."""
    if not getattr(getattr(model, "loss", None), "pairwise", False):
        return
    if y is None:
        raise ValueError(
            f"{type(model.loss).__name__} trains on labelled pairs: call fit(x, labels) with one label per row, "
            "1 for a matching pair and -1 for a non-matching one."
        )
    if not is_array(y) or y.size == 0:
        return
    values = np.unique(y)
    invalid = values[(values != 1) & (values != -1)]
    if invalid.size:
        hint = " (0/1 labels: pass `2 * labels - 1`)" if set(values.tolist()) <= {0, 1} else ""
        raise ValueError(
            f"{type(model.loss).__name__} labels must be 1 (matching pair) or -1 (non-matching pair), as in "
            f"torch.nn.CosineEmbeddingLoss; got the value(s) {invalid[:5].tolist()}{hint}."
        )
