"""Checks of in-memory (numpy) data before `fit`/`evaluate`/`predict` hand it to Keras.

Each problem is reported up front as one ValueError/TypeError naming the input or task, what was
expected and what was given, instead of a long backend trace, a silent broadcast, or NaN weights
after the first epoch. Only numpy arrays (alone, or in a dict/list/tuple) are looked at; tf.data
datasets, generators, `keras.utils.PyDataset`s and backend tensors are handed to Keras unchecked.
Every check is one O(n) numpy pass per call (no copies of the data beyond a boolean mask).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mtmm_keras.layers.modality_mask import MODALITY_MASK

# Array kinds Keras can feed: bool, signed/unsigned int, float.
_NUMERIC_KINDS = "biuf"


def _scalar(value: Any) -> Any:
    """A numpy scalar as a plain Python number (for messages: 5, not np.int32(5))."""
    return value.item() if isinstance(value, np.generic) else value


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic))  # np.generic: a numpy scalar, refused as such


def _flat_arrays(data: Any, prefix: str) -> list[tuple[str, np.ndarray]]:
    """(name, array) for every numpy array in `data` (an array, or a dict/list/tuple of them)."""
    if _is_array(data):
        return [(prefix, data)]
    if isinstance(data, dict):
        return [(f"{prefix}[{key!r}]", value) for key, value in data.items() if _is_array(value)]
    if isinstance(data, (list, tuple)):
        return [(f"{prefix}[{i}]", value) for i, value in enumerate(data) if _is_array(value)]
    return []


def is_in_memory(data: Any) -> bool:
    """True when `data` is a numpy array or a non-empty dict/list/tuple made only of numpy arrays."""
    if _is_array(data):
        return True
    values = list(data.values()) if isinstance(data, dict) else data if isinstance(data, (list, tuple)) else None
    return bool(values) and all(_is_array(v) for v in values)


# --------------------------------------------------------------------------------------------- inputs


def _input_struct(model: Any) -> Any:
    try:
        return model.input
    except (AttributeError, ValueError):  # not a built functional model: nothing to compare against
        return None




def fill_modality_mask(model: Any, x: Any) -> Any:
    """A fusion model's `modality_mask` input (`[batch, M]`, 1 = present) defaults to all ones: `x` given as a
    dict without that key (arrays or tensors, or a tf.data dataset yielding such dicts) gets it added, so a
    model built for missing modalities trains and predicts on complete data as it is. Anything else is
    returned unchanged."""
    struct = _input_struct(model)
    if not isinstance(struct, dict) or MODALITY_MASK not in struct:
        return x
    modalities = struct[MODALITY_MASK].shape[-1]
    if isinstance(x, dict):
        if MODALITY_MASK in x or not x:
            return x
        first = next(iter(x.values()))
        if _is_array(first) and np.ndim(first):
            return {**x, MODALITY_MASK: np.ones((len(first), modalities), dtype="float32")}
        try:
            rows = keras.ops.shape(first)[0]
        except Exception:  # noqa: BLE001 - not a tensor: Keras reports the missing input itself
            return x
        return {**x, MODALITY_MASK: keras.ops.ones((rows, modalities), dtype="float32")}
    return _fill_dataset_mask(x, modalities)


def _fill_dataset_mask(dataset: Any, modalities: int) -> Any:
    """A batched tf.data dataset whose inputs are a dict without `modality_mask`, with all-ones masks added."""
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(dataset, tf.data.Dataset):
        return dataset
    spec = dataset.element_spec
    inputs = spec[0] if isinstance(spec, tuple) and spec else spec
    if not isinstance(inputs, dict) or MODALITY_MASK in inputs or not inputs:
        return dataset

    def add_mask(x):
        first = next(iter(x.values()))
        return {**x, MODALITY_MASK: tf.ones(tf.stack([tf.shape(first)[0], modalities]), dtype=tf.float32)}

    if isinstance(spec, tuple):
        return dataset.map(lambda x, *rest: (add_mask(x), *rest))
    return dataset.map(add_mask)


def _check_modality_mask(description: str, array: np.ndarray, spec: Any) -> None:
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
            f"neither (first at row {int(np.argmax(bad.any(axis=1)))}: {_scalar(array[bad][0])!r})."
        )


def unwrap_single_input(model: Any, x: Any) -> Any:
    """`{input_name: array}` for a one-input model becomes the bare array (what Keras expects; a dict
    works too but warns that its structure does not match); a fusion model's missing `modality_mask`
    becomes all ones (`fill_modality_mask`). Anything else is returned unchanged."""
    x = fill_modality_mask(model, x)
    struct = _input_struct(model)
    if isinstance(x, dict) and len(x) == 1 and isinstance(struct, keras.KerasTensor):
        (key, value), = x.items()
        if key == struct.name and _is_array(value):
            x = value
    return _text_as_tensors(model, x)


def _text_as_tensors(model: Any, x: Any) -> Any:
    """NumPy text arrays for the model's string inputs (a TextVectorization layer's, say) as TensorFlow string
    tensors: Keras's array adapter takes numbers only ("Invalid dtype: str352"). Nothing else changes."""
    texts = [(description, spec) for description, array, spec in _named_inputs(model, x)
             if spec is not None and str(spec.dtype) == "string" and array.dtype.kind in "USO"]
    if not texts:
        return x
    if keras.backend.backend() != "tensorflow":
        raise TypeError(
            f"{texts[0][0]} is a string input: Keras feeds text to a model on the TensorFlow backend only "
            f"(this is {keras.backend.backend()!r}). Set KERAS_BACKEND=tensorflow, or turn the text into token ids "
            "before the model."
        )
    import tensorflow as tf

    names = {spec.name for _, spec in texts}

    def convert(value: Any, spec_name: str | None) -> Any:
        if spec_name in names and _is_array(value) and value.dtype.kind in "USO":
            return tf.constant(value.astype(str))
        return value

    struct = _input_struct(model)
    if isinstance(x, dict):
        return {key: convert(value, key) for key, value in x.items()}
    if isinstance(x, (list, tuple)) and isinstance(struct, (list, tuple)):
        return type(x)(convert(value, spec.name) for value, spec in zip(x, struct))
    return convert(x, getattr(struct, "name", None))


def _named_inputs(model: Any, x: Any) -> list[tuple[str, np.ndarray, Any]]:
    """(description, array, input spec or None) for each numpy array in `x`."""
    struct = _input_struct(model)
    if isinstance(struct, keras.KerasTensor):
        if _is_array(x):
            return [(f"input {struct.name!r}", x, struct)]
        if isinstance(x, dict) and len(x) == 1 and _is_array(next(iter(x.values()))):
            (key, value), = x.items()
            return [(f"input {key!r}", value, struct if key == struct.name else None)]
        if isinstance(x, (list, tuple)) and len(x) == 1 and _is_array(x[0]):
            return [(f"input {struct.name!r}", x[0], struct)]
    if isinstance(struct, dict):
        if _is_array(x):
            raise ValueError(
                f"This model has {len(struct)} inputs {sorted(struct)}: pass `x` as a dict "
                f"{{input name: array}}, got a single array of shape {x.shape}."
            )
        if isinstance(x, dict):
            return [(f"input {key!r}", value, struct.get(key)) for key, value in x.items() if _is_array(value)]
    if isinstance(struct, (list, tuple)) and isinstance(x, (list, tuple)) and len(x) == len(struct):
        return [(f"input {spec.name!r}", value, spec) for value, spec in zip(x, struct) if _is_array(value)]
    if isinstance(struct, (list, tuple)) and isinstance(x, dict):  # Keras matches the dict's keys to input names
        by_name = {spec.name: spec for spec in struct}
        return [(f"input {key!r}", value, by_name.get(key)) for key, value in x.items() if _is_array(value)]
    return [(f"input {name[1:]}", value, None) for name, value in _flat_arrays(x, "x")]


def _check_dtype(description: str, array: np.ndarray, expected: str) -> None:
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(
            f"{description} has dtype {array.dtype} ({array.dtype.kind!r} arrays cannot be fed to the model); "
            f"expected numbers ({expected}). Convert it first, e.g. with `array.astype('float32')`."
        )


def _check_input_dtype(description: str, array: np.ndarray, spec: Any) -> None:
    """A string input (e.g. one a TextVectorization layer reads) takes text arrays; every other input numbers."""
    if spec is not None and str(spec.dtype) == "string":
        if array.dtype.kind not in "USO":
            raise TypeError(
                f"{description} is a string input (the model turns text into numbers itself), but got an array of "
                f"dtype {array.dtype}. Pass the raw text, e.g. np.array([['a title'], ['another one']])."
            )
        return
    _check_dtype(description, array, str(spec.dtype) if spec is not None else "numbers")


def _check_input_shape(description: str, array: np.ndarray, spec: Any) -> None:
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


def _check_integer_input(model: Any, description: str, array: np.ndarray, spec: Any) -> None:
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
                f"{int(rows.sum())} row(s) have a fractional part (first at row {first}: {_scalar(value)!r}); they "
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
            f"{first}; smallest {_scalar(low)!r}, largest {_scalar(high)!r}). Valid values are {valid}."
        )


# --------------------------------------------------------------------------------------------- labels


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
    from mtmm_keras.models._task_losses import missing_rule
    from mtmm_keras.models.multi_task_model import weighting_of

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
                f"got values from {_scalar(array.min())!r} to {_scalar(array.max())!r} ({int(bad.sum())} out of range, first at row {first})."
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
            f"{_scalar(array.min())!r} to {_scalar(array.max())!r}."
        )


def _named_labels(model: Any, y: Any, present: dict[str, np.ndarray] | None = None) -> list[tuple[str, np.ndarray]]:
    """(description, array) for each numpy label array; label structure and per-task checks on the way."""
    outputs = getattr(model, "output", None) if not getattr(model, "_is_joint_embedding", False) else None
    if isinstance(outputs, (list, tuple)) and len(outputs) > 1:
        output_names = list(getattr(model, "output_names", None) or [])
        if len(output_names) == len(outputs):  # a list-output model: its tasks by Keras's output names
            outputs = dict(zip(output_names, outputs))
    if isinstance(outputs, dict):
        names = list(outputs)
        losses = _task_losses(model, names)
        if isinstance(y, (list, tuple)) and len(y) == len(names) and all(_is_array(v) for v in y):
            y = dict(zip(names, y))  # labels in output order: checked (missing labels too) as the dict
        if _is_array(y) and len(names) > 1:
            raise ValueError(
                f"This model has {len(names)} tasks {names}: pass `y` as a dict {{task name: labels}}, "
                f"got a single array of shape {y.shape}."
            )
        if _is_array(y):
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
                if not _is_array(value):
                    continue
                _check_dtype(f"Labels for task {key!r}", value, "numbers")
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
    named = [(f"labels {name}" if name != "y" else "labels `y`", value) for name, value in _flat_arrays(y, "y")]
    for description, value in named:
        _check_dtype(description, value, "numbers")
    return named


def _check_pairwise_labels(model: Any, y: Any) -> None:
    """A pairwise loss (CosineEmbeddingLoss) needs one label per row, each 1 (similar) or −1 (dissimilar)."""
    if not getattr(getattr(model, "loss", None), "pairwise", False):
        return
    if y is None:
        raise ValueError(
            f"{type(model.loss).__name__} trains on labelled pairs: call fit(x, labels) with one label per row, "
            "1 for a matching pair and -1 for a non-matching one."
        )
    if not _is_array(y) or y.size == 0:
        return
    values = np.unique(y)
    invalid = values[(values != 1) & (values != -1)]
    if invalid.size:
        hint = " (0/1 labels: pass `2 * labels - 1`)" if set(values.tolist()) <= {0, 1} else ""
        raise ValueError(
            f"{type(model.loss).__name__} labels must be 1 (matching pair) or -1 (non-matching pair), as in "
            f"torch.nn.CosineEmbeddingLoss; got the value(s) {invalid[:5].tolist()}{hint}."
        )


# --------------------------------------------------------------------------------------------- common


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
    inputs = _named_inputs(model, x)
    for description, array, spec in inputs:
        _check_input_dtype(description, array, spec)
    named: list[tuple[str, np.ndarray]] = [(d, a) for d, a, _ in inputs]
    present: dict[str, np.ndarray] = {}  # label description -> rows where that task's label is present
    if labelled:
        if getattr(model, "_is_joint_embedding", False):
            _check_pairwise_labels(model, y)
        if y is not None and is_in_memory(y):
            named += _named_labels(model, y, present)
        if sample_weight is not None and is_in_memory(sample_weight):
            named += [(f"`sample_weight`{name[len('sample_weight'):]}", value)
                      for name, value in _flat_arrays(sample_weight, "sample_weight")]
    _check_rows(named, call)
    for description, array, spec in inputs:
        if spec is None:
            continue
        if spec.name == MODALITY_MASK:
            _check_modality_mask(description, array, spec)
        _check_input_shape(description, array, spec)
        if "int" in str(spec.dtype):
            _check_integer_input(model, description, array, spec)
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
