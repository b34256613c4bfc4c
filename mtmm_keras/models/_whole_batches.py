"""`predict` on whole batches only: the last, partial batch is padded to the batch size and its padding dropped.

Keras's `predict` hands the compiled step a shorter last batch whenever the rows are not a multiple of the batch
size, and a new shape is a new trace and a new XLA compile for a model compiled by XLA (TensorFlow with
`jit_compile`, JAX): the first `predict` of an entry on its test split paid for the model twice (movies_mmoe:
13.7 s, two traces and two compiles; 6.7 s now). Predicting the whole batches, then the remaining rows padded with
copies of the last row to one more batch, keeps every step at one shape; the padded rows' outputs are dropped, and
each row's outputs are the model's outputs for that row alone, as before (inference layers do not mix rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

#: Keras's `predict` batch size when none is given.
KERAS_DEFAULT_BATCH_SIZE = 32
#: `predict` keywords this path passes on; any other (callbacks, steps) leaves the call to Keras as it is.
_PASSED_ON = {"batch_size", "verbose"}


def predict_in_whole_batches(model: Any, predict: Callable[..., Any], x: Any, args: tuple, kwargs: dict) -> Any:
    """`predict(x, *args, **kwargs)`, run as whole batches plus one padded batch where that applies (a model
    compiled by XLA: TensorFlow with `jit_compile`, or JAX; array inputs of one row count, more rows than one batch
    and not a multiple of it, no arguments past `batch_size` and `verbose`); otherwise exactly that call. Without
    XLA, TensorFlow's second trace costs less than a second `predict` call (~70 ms for penguins_hard)."""
    batch_size = kwargs.get("batch_size") or KERAS_DEFAULT_BATCH_SIZE
    rows = _row_count(x)
    if (keras.backend.backend() not in ("tensorflow", "jax") or getattr(model, "jit_compile", False) is not True
            or args or not set(kwargs) <= _PASSED_ON
            or rows is None or not isinstance(batch_size, int) or rows <= batch_size or rows % batch_size == 0):
        return predict(x, *args, **kwargs)
    whole = rows - rows % batch_size
    head = predict(keras.tree.map_structure(lambda a: a[:whole], x), **kwargs)
    tail = predict(keras.tree.map_structure(lambda a: _pad_rows(a[whole:], batch_size), x),
                   **{**kwargs, "verbose": 0})
    return keras.tree.map_structure(lambda h, t: np.concatenate([h, t[:rows - whole]]), head, tail)


def _row_count(x: Any) -> int | None:
    """The shared first dimension of `x`'s NumPy arrays; None when `x` holds anything else or they differ."""
    try:
        leaves = keras.tree.flatten(x)
    except Exception:  # noqa: BLE001 - an input the tree utilities cannot walk: left to Keras
        return None
    if not leaves or not all(isinstance(leaf, np.ndarray) and leaf.ndim >= 1 for leaf in leaves):
        return None
    counts = {leaf.shape[0] for leaf in leaves}
    return counts.pop() if len(counts) == 1 else None


def _pad_rows(rows: np.ndarray, size: int) -> np.ndarray:
    """`rows` followed by copies of its last row, `size` rows in all (a real row: no token id or pixel a model
    has not seen)."""
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)])
