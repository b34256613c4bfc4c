"""Checks of in-memory (numpy) data before `fit`/`evaluate`/`predict` hand it to Keras.

Each problem is reported up front as one ValueError/TypeError naming the input or task, what was
expected and what was given, instead of a long backend trace, a silent broadcast, or NaN weights
after the first epoch. Only numpy arrays (alone, or in a dict/list/tuple) are looked at; tf.data
datasets, generators, `keras.utils.PyDataset`s and backend tensors are handed to Keras unchecked.
Every check is one O(n) numpy pass per call (no copies of the data beyond a boolean mask). This module runs
them in order (`check`); the inputs' are in `_input_checks`, the labels' in `_label_checks`, and what is handed to
Keras is prepared in `_data_prep`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtmm_keras.layers.modality_mask import MODALITY_MASK
from mtmm_keras.models._arrays import flat_arrays, is_in_memory
from mtmm_keras.models._input_checks import (
    check_input_dtype,
    check_input_shape,
    check_integer_input,
    check_modality_mask,
    named_inputs,
)
from mtmm_keras.models._label_checks import check_pairwise_labels, named_labels


def _check_rows(named: list[tuple[str, np.ndarray]], call: str) -> None:
    for description, array in named:
        if array.ndim == 0:
            raise ValueError(f"{description} is a scalar; {call} needs one row per example (an array of shape [rows, ...]).")
    counts = {description: int(array.shape[0]) for description, array in named}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{d}: {n}" for d, n in counts.items())
        raise ValueError(f"Every input and label array must have the same number of rows (one per example); got {listing}.")
    if counts and not next(iter(counts.values())):
        listing = ", ".join(f"{d}" for d in counts)
        raise ValueError(f"No data: {listing} ha{'s' if len(counts) == 1 else 've'} 0 rows; {call} needs at least one example.")

def _check_finite(named: list[tuple[str, np.ndarray]]) -> None:
    for description, array in named:
        if array.dtype.kind != "f" or array.size == 0:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(array.sum()):  # fast path: a NaN or inf anywhere makes the sum non-finite
                continue
        bad = ~np.isfinite(array)
        if not bad.any():
            continue  # the sum overflowed, the values are fine
        rows = bad.reshape(len(array), -1).any(axis=1)
        first = int(np.argmax(rows))
        raise ValueError(
            f"{description} holds {int(bad.sum())} non-finite value(s) (NaN or ±inf) in {int(rows.sum())} row(s), "
            f"the first at row {first}. One such value turns every weight into NaN during training: drop or "
            "impute those rows first (e.g. `np.isfinite(a).all(axis=1)` to find them)."
        )

def _zero_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A copy of `array` with `rows` set to 0 (row numbers in messages stay those of the user's array)."""
    copy = np.array(array, copy=True)
    copy[rows] = 0
    return copy

def check(model: Any, x: Any, y: Any = None, sample_weight: Any = None, *, call: str, labelled: bool,
          finite: bool = False) -> None:
    """Validate in-memory `x` (and `y`, `sample_weight` when `labelled`) for `call` ('fit', 'evaluate', ...);
    `finite` also refuses NaN/inf in float arrays (for training, where one such value ruins the weights).

    Raises ValueError/TypeError describing the first problem; returns quietly for data it does not look at.
    """
    if not is_in_memory(x):
        return
    inputs = named_inputs(model, x)
    for description, array, spec in inputs:
        check_input_dtype(description, array, spec)
    named: list[tuple[str, np.ndarray]] = [(d, a) for d, a, _ in inputs]
    present: dict[str, np.ndarray] = {}  # label description -> rows where that task's label is present
    if labelled:
        if getattr(model, "_is_joint_embedding", False):
            check_pairwise_labels(model, y)
        if y is not None and is_in_memory(y):
            named += named_labels(model, y, present)
        if sample_weight is not None and is_in_memory(sample_weight):
            named += [(f"`sample_weight`{name[len('sample_weight'):]}", value)
                      for name, value in flat_arrays(sample_weight, "sample_weight")]
    _check_rows(named, call)
    for description, array, spec in inputs:
        if spec is None:
            continue
        if spec.name == MODALITY_MASK:
            check_modality_mask(description, array, spec)
        check_input_shape(description, array, spec)
        if "int" in str(spec.dtype):
            check_integer_input(model, description, array, spec)
    if call == "fit":
        for description, rows in present.items():
            if not rows.any():
                raise ValueError(
                    f"The {description} are all missing (every row holds the task's missing-label marker), so "
                    "the task cannot be trained; drop the task or give it labels."
                )
    if finite:
        # Missing labels may be NaN by design: only the rows where a task's label is present must be finite.
        _check_finite([(d, _zero_rows(a, ~present[d]) if d in present else a) for d, a in named])
