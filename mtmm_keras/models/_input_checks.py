"""Checks of a model's in-memory inputs before Keras sees them: names, dtypes (numbers, or text for a string input),
shapes, integer ids within the vocabulary, the fusion models' 0/1 `modality_mask`."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mtmm_keras.models._arrays import (
    check_dtype,
    flat_arrays,
    input_struct,
    is_array,
    scalar,
)


def check_modality_mask(description: str, array: np.ndarray, spec: Any) -> None:
    """The presence mask: [rows, M] with M the number of modalities (columns in `encoders` order), 0 or 1."""
    expected = spec.shape[-1]
    if array.ndim != 2 or array.shape[1] != expected:
        raise ValueError(
            f"{description} has shape {array.shape}, but the model expects [rows, {expected}]: one column per "
            f"modality, in the order of the `encoders` dict the model was built from, 1 = present, 0 = missing."
        )
    if array.size and not np.all((array == 0) | (array == 1)):
        bad = ~((array == 0) | (array == 1))
        raise ValueError(
            f"{description} must hold only 0 (modality missing) and 1 (present); {int(bad.sum())} value(s) are "
            f"neither (first at row {int(np.argmax(bad.any(axis=1)))}: {scalar(array[bad][0])!r})."
        )

def named_inputs(model: Any, x: Any) -> list[tuple[str, np.ndarray, Any]]:
    """(description, array, input spec or None) for each numpy array in `x`."""
    struct = input_struct(model)
    if isinstance(struct, keras.KerasTensor):
        if is_array(x):
            return [(f"input {struct.name!r}", x, struct)]
        if isinstance(x, dict) and len(x) == 1 and is_array(next(iter(x.values()))):
            (key, value), = x.items()
            return [(f"input {key!r}", value, struct if key == struct.name else None)]
        if isinstance(x, (list, tuple)) and len(x) == 1 and is_array(x[0]):
            return [(f"input {struct.name!r}", x[0], struct)]
    if isinstance(struct, dict):
        if is_array(x):
            raise ValueError(
                f"This model has {len(struct)} inputs {sorted(struct)}: pass `x` as a dict "
                f"{{input name: array}}, got a single array of shape {x.shape}."
            )
        if isinstance(x, dict):
            return [(f"input {key!r}", value, struct.get(key)) for key, value in x.items() if is_array(value)]
    if isinstance(struct, (list, tuple)) and isinstance(x, (list, tuple)) and len(x) == len(struct):
        return [(f"input {spec.name!r}", value, spec) for value, spec in zip(x, struct) if is_array(value)]
    if isinstance(struct, (list, tuple)) and isinstance(x, dict):  # Keras matches the dict's keys to input names
        by_name = {spec.name: spec for spec in struct}
        return [(f"input {key!r}", value, by_name.get(key)) for key, value in x.items() if is_array(value)]
    return [(f"input {name[1:]}", value, None) for name, value in flat_arrays(x, "x")]

def check_input_dtype(description: str, array: np.ndarray, spec: Any) -> None:
    """A string input (e.g. one a TextVectorization layer reads) takes text arrays; every other input numbers."""
    if spec is not None and str(spec.dtype) == "string":
        if array.dtype.kind not in "USO":
            raise TypeError(
                f"{description} is a string input (the model turns text into numbers itself), but got an array of "
                f"dtype {array.dtype}. Pass the raw text, e.g. np.array([['a title'], ['another one']])."
            )
        return
    check_dtype(description, array, str(spec.dtype) if spec is not None else "numbers")

def check_input_shape(description: str, array: np.ndarray, spec: Any) -> None:
    """Keras's own rule: the rank may differ by a trailing axis of size 1; every known size must match."""
    expected = tuple(spec.shape[1:])
    got = tuple(array.shape[1:])
    if len(got) == len(expected) + 1 and got[-1:] == (1,):
        got = got[:-1]
    elif len(got) == len(expected) - 1 and expected[-1:] == (1,):
        got = got + (1,)
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise ValueError(
            f"{description} has shape {array.shape}, but the model expects [rows, "
            f"{', '.join('any' if d is None else str(d) for d in expected)}] (shape {(None, *spec.shape[1:])})."
        )

def _embedding_sizes(model: Any, tensor: Any, depth: int = 0) -> list[int] | None:
    """`input_dim` of the Embedding layers that read `tensor` directly (through nested functional
    models), or None when some other layer reads it too or the graph cannot be walked."""
    if depth > 8:
        return None
    sizes: list[int] = []
    try:
        for operation in model.operations:
            for node in operation._inbound_nodes:
                positions = [i for i, t in enumerate(node.input_tensors) if t is tensor]
                if not positions:
                    continue
                if isinstance(operation, keras.layers.Embedding):
                    sizes.append(int(operation.input_dim))
                elif isinstance(operation, keras.Model) and len(operation.inputs) == len(node.input_tensors):
                    inner = _embedding_sizes(operation, operation.inputs[positions[0]], depth + 1)
                    if inner is None:
                        return None
                    sizes.extend(inner)
                else:
                    return None
    except Exception:  # noqa: BLE001 - Keras internals moved: skip the range check, keep the rest
        return None
    return sizes or None

def check_integer_input(model: Any, description: str, array: np.ndarray, spec: Any) -> None:
    """Integer inputs (token ids, raw uint8 pixels): whole numbers only, within the embedding's
    vocabulary when the input feeds an Embedding, else within the input dtype's range."""
    if array.dtype.kind == "f":
        fractional = array != np.floor(array)  # NaN counts as fractional too
        if fractional.any():
            rows = fractional.reshape(len(array), -1).any(axis=1)
            first = int(np.argmax(rows))
            value = array[first].reshape(-1)[np.argmax(fractional[first].reshape(-1))]
            raise ValueError(
                f"{description} takes whole numbers ({spec.dtype}), but {int(fractional.sum())} value(s) in "
                f"{int(rows.sum())} row(s) have a fractional part (first at row {first}: {scalar(value)!r}); they "
                f"would be truncated silently. Pass integers, e.g. `np.rint(a).astype({str(spec.dtype)!r})` if "
                "rounding is meant."
            )
    if array.dtype.kind not in "iuf" or array.size == 0:
        return
    sizes = _embedding_sizes(model, spec)
    if sizes:
        low_ok, high_ok = 0, min(sizes) - 1
        valid = f"0 to {high_ok} (the embedding's vocabulary size is {high_ok + 1}); map unknown tokens to a reserved id"
        what = "token ids outside the vocabulary"
    else:
        try:
            info = np.iinfo(str(spec.dtype))
        except (TypeError, ValueError):
            return
        low_ok, high_ok = int(info.min), int(info.max)
        valid = f"{low_ok} to {high_ok}, the range of {spec.dtype}; other values would wrap around when cast"
        what = f"values outside the range of {spec.dtype}"
    low, high = array.min(), array.max()
    if low < low_ok or high > high_ok:
        bad = (array < low_ok) | (array > high_ok)
        rows = bad.reshape(len(array), -1).any(axis=1)
        first = int(np.argmax(rows))
        raise ValueError(
            f"{description} holds {what}: {int(bad.sum())} value(s) in {int(rows.sum())} row(s) (first at row "
            f"{first}; smallest {scalar(low)!r}, largest {scalar(high)!r}). Valid values are {valid}."
        )
