"""Small helpers the data checks and data preparation share: which values are in-memory arrays, their names in
messages, the model's input structure, the numeric-dtype rule."""

from __future__ import annotations

from typing import Any

import numpy as np

# Array kinds Keras can feed: bool, signed/unsigned int, float.
NUMERIC_KINDS = "biuf"

def scalar(value: Any) -> Any:
    """A numpy scalar as a plain Python number (for messages: 5, not np.int32(5))."""
    return value.item() if isinstance(value, np.generic) else value

def is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic))  # np.generic: a numpy scalar, refused as such

def flat_arrays(data: Any, prefix: str) -> list[tuple[str, np.ndarray]]:
    """(name, array) for every numpy array in `data` (an array, or a dict/list/tuple of them)."""
    if is_array(data):
        return [(prefix, data)]
    if isinstance(data, dict):
        return [(f"{prefix}[{key!r}]", value) for key, value in data.items() if is_array(value)]
    if isinstance(data, (list, tuple)):
        return [(f"{prefix}[{i}]", value) for i, value in enumerate(data) if is_array(value)]
    return []

def is_in_memory(data: Any) -> bool:
    """True when `data` is a numpy array or a non-empty dict/list/tuple made only of numpy arrays."""
    if is_array(data):
        return True
    values = list(data.values()) if isinstance(data, dict) else data if isinstance(data, (list, tuple)) else None
    return bool(values) and all(is_array(v) for v in values)

def input_struct(model: Any) -> Any:
    try:
        return model.input
    except (AttributeError, ValueError):  # not a built functional model: nothing to compare against
        return None

def check_dtype(description: str, array: np.ndarray, expected: str) -> None:
    if array.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(
            f"{description} has dtype {array.dtype} ({array.dtype.kind!r} arrays cannot be fed to the model); "
            f"expected numbers ({expected}). Convert it first, e.g. with `array.astype('float32')`."
        )
