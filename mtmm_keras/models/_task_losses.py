"""Per-task losses with missing labels: the pieces `MultiTaskModel`'s loss, metrics and train steps share.

A task's label may be missing in any row. The missing marker is `Task.missing_label`: "auto" (the
default) means NaN for any task, and also −1 for tasks trained with sparse class ids (a sparse
categorical loss; not binary cross-entropy, where −1/1 labels are a common mistake that must be
refused, not silently dropped); a number means exactly that value; None means labels are never
missing. A row counts as missing for a task when all of its label values are the marker (a row
with NaN in only some of its values is a data error: `fit` refuses it for in-memory data). Each task's
loss is the mean of its per-row losses over the rows where its label is present:

    L_t = Σ_i m_it w_i ℓ_t(i) / max(Σ_i m_it, 1)

(m_it ∈ {0, 1} the presence mask, w_i the sample weight), so a task with no label in a batch adds 0
and a row with no labels at all adds nothing. Labels at missing rows are replaced by 0 before the loss
is evaluated (NaN·0 is NaN, so masking alone would not do). With every label present this is exactly
Keras's `sum_over_batch_size` reduction, Σ_i w_i ℓ(i) / N.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import keras
from keras import ops



@dataclasses.dataclass(frozen=True)
class TaskLoss:
    """One task's compiled loss, λ_t and missing-label rule (resolved once, at trace time)."""

    name: str
    loss: Any
    weight: float
    missing_nan: bool
    missing_value: float | None


def _loss_kind(loss: Any) -> str:
    name = loss if isinstance(loss, str) else type(loss).__name__
    if type(loss).__name__ == "LossFunctionWrapper":
        name = getattr(getattr(loss, "fn", None), "__name__", "")
    name = str(name).lower().replace("_", "")
    if "sparse" in name:
        return "sparse"
    if name.startswith("binary"):
        return "binary"
    return "other"


def missing_rule(missing_label: Any, loss: Any) -> tuple[bool, float | None]:
    """(NaN marks a missing label, the other marker value or None) for a task's `missing_label` setting."""
    if missing_label is None:
        return False, None
    if isinstance(missing_label, str):
        if missing_label == "auto":
            return True, (-1.0 if _loss_kind(loss) == "sparse" else None)
        if missing_label.lower() == "nan":
            return True, None
        raise ValueError(f"`missing_label`: expected 'auto', None or a number, got {missing_label!r}.")
    value = float(missing_label)
    if math.isnan(value):
        return True, None
    return False, value


def _resolve_loss(identifier: Any) -> Any:
    """A `keras.losses.Loss`, or a per-row loss function (what Keras wraps in a `LossFunctionWrapper`)."""
    if isinstance(identifier, keras.losses.Loss) or (callable(identifier) and not isinstance(identifier, str)):
        return identifier
    return keras.losses.get(identifier)


def task_losses_of(model: Any) -> list[TaskLoss]:
    """The per-task losses the model was compiled with (`loss`, `loss_weights`), in output order,
    with each task's missing-label rule from its `Task` config."""
    names = list(model.output_names)
    loss = model.loss
    weights = compiled_loss_weights(model)
    if isinstance(loss, dict):
        losses = {name: loss.get(name) for name in names}
    elif isinstance(loss, (list, tuple)):
        losses = dict(zip(names, loss))
    else:
        losses = {name: loss for name in names}
    if isinstance(weights, dict):
        lambdas = {name: weights.get(name, 1.0) for name in names}
    elif isinstance(weights, (list, tuple)):
        lambdas = dict(zip(names, weights))
    else:
        lambdas = {name: 1.0 if weights is None else weights for name in names}
    settings = {config["name"]: config.get("missing_label", "auto") for config in getattr(model, "task_configs", ())}
    result = []
    for name in names:
        if losses.get(name) is None:
            continue
        nan, value = missing_rule(settings.get(name, "auto"), losses[name])
        result.append(TaskLoss(name, _resolve_loss(losses[name]), float(lambdas[name]), nan, value))
    return result


def compiled_loss_weights(model: Any) -> Any:
    """`compile(loss_weights=...)`: as `MultiTaskModel.compile` recorded it; for another model, Keras's
    public `get_compile_config()` (eager only: it serializes the optimizer). None: every λ_t = 1."""
    if "compiled_loss_weights" in getattr(model, "__dict__", {}):
        return model.compiled_loss_weights
    try:
        return (model.get_compile_config() or {}).get("loss_weights")
    except Exception:  # noqa: BLE001 - inside a traced function the optimizer cannot be serialized
        return None


def present_and_safe(label: Any, task: TaskLoss) -> tuple[Any, Any]:
    """(presence mask [rows] as float32, or None when the task has no marker; labels with every
    missing value replaced by 0)."""
    label = ops.convert_to_tensor(label)
    missing = None
    if task.missing_nan and "float" in str(label.dtype):
        missing = ops.isnan(label)
    if task.missing_value is not None:
        marked = ops.equal(label, ops.cast(task.missing_value, label.dtype))
        missing = marked if missing is None else ops.logical_or(missing, marked)
    if missing is None:
        return None, label
    safe = ops.where(missing, ops.zeros_like(label), label)
    if len(label.shape) > 1:
        missing = ops.all(ops.reshape(missing, (ops.shape(label)[0], -1)), axis=1)
    return ops.cast(ops.logical_not(missing), "float32"), safe


def _per_row(loss: Any, label: Any, prediction: Any) -> Any:
    """The loss's unreduced values, as `Loss.__call__` computes them before reducing."""
    dtype = loss.dtype if isinstance(loss, keras.losses.Loss) else keras.backend.floatx()
    prediction = ops.convert_to_tensor(prediction, dtype=dtype)
    label = ops.convert_to_tensor(label, dtype=dtype)
    return loss.call(label, prediction) if isinstance(loss, keras.losses.Loss) else loss(label, prediction)


def _expand_to(weights: Any, values: Any) -> Any:
    while len(weights.shape) > len(values.shape):
        weights = ops.squeeze(weights, axis=-1)
    while len(weights.shape) < len(values.shape):
        weights = ops.expand_dims(weights, axis=-1)
    return weights


def task_loss(task: TaskLoss, label: Any, prediction: Any, sample_weight: Any = None) -> tuple[Any, Any]:
    """(mean loss over the rows where the task's label is present, number of those rows). Not scaled
    for tf.distribute replicas: the caller scales the combined total once (`scale_for_replicas`)."""
    present, safe = present_and_safe(label, task)
    values = _per_row(task.loss, safe, prediction)
    dtype = values.dtype
    rows = ops.cast(ops.shape(values)[0], dtype)
    weights = None if present is None else ops.cast(present, dtype)
    if sample_weight is not None:
        sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
        weights = sample_weight if weights is None else weights * _expand_to(sample_weight, weights)
    if len(values.shape) == 0:
        return values, rows
    total = ops.sum(values if weights is None else values * _expand_to(weights, values))
    if present is not None and len(values.shape) == 1:  # one value per row (the usual case): fewer ops
        count = ops.sum(ops.cast(present, dtype))
        return total / ops.maximum(count, 1.0), count
    elements = ops.cast(ops.prod(ops.convert_to_tensor(ops.shape(values), dtype="int32")), dtype)
    if present is None:
        return ops.divide_no_nan(total, elements), rows
    count = ops.sum(ops.cast(present, dtype))
    per_row = elements / ops.maximum(rows, 1.0)  # values per row
    mean = total / ops.maximum(count * per_row, 1.0)
    return mean, count


def compute_task_losses(tasks: Sequence[TaskLoss], y: Any, y_pred: Any, sample_weight: Any = None) -> tuple[list, list]:
    """(per-task mean losses, per-task present-row counts), in the order of `tasks`."""
    means, counts = [], []
    for i, task in enumerate(tasks):
        label = _pick(y, task.name, i)
        weight = _pick(sample_weight, task.name, i) if isinstance(sample_weight, (dict, list, tuple)) else sample_weight
        mean, count = task_loss(task, label, _pick(y_pred, task.name, i), weight)
        means.append(mean)
        counts.append(count)
    return means, counts


def global_task_losses(means: Sequence[Any], counts: Sequence[Any]) -> tuple[list, list]:
    """Under a tf.distribute strategy with several replicas: each task's mean over the present rows of
    the *global* batch and the global row count (one all-reduce of Σ mean·count and of the counts, which
    is differentiable), the same on every replica. A replica's own mean over its local present rows is
    not its share of the global mean when replicas see different numbers of present rows. Elsewhere
    (one replica, JAX): unchanged."""
    from mtmm_keras.distribute.scaling import num_replicas

    if num_replicas() == 1:
        return list(means), list(counts)
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    dtypes = [mean.dtype for mean in means]
    local_means = ops.stack([ops.cast(mean, "float32") for mean in means])
    local_counts = ops.stack([ops.cast(count, "float32") for count in counts])
    sums, totals = context.all_reduce("sum", [local_means * local_counts, local_counts])
    global_means = sums / ops.maximum(totals, 1.0)
    return [ops.cast(global_means[t], dtype) for t, dtype in enumerate(dtypes)], [totals[t] for t in range(len(dtypes))]


def _pick(structure: Any, name: str, index: int) -> Any:
    if isinstance(structure, dict):
        return structure[name]
    if isinstance(structure, (list, tuple)):
        return structure[index]
    return structure


def masked_labels(tasks: Sequence[TaskLoss], y: Any) -> tuple[dict, dict]:
    """({task: labels with missing values replaced}, {task: presence mask or None})."""
    safe, masks = {}, {}
    for i, task in enumerate(tasks):
        masks[task.name], safe[task.name] = present_and_safe(_pick(y, task.name, i), task)
    return safe, masks


class TaskLogs(keras.metrics.Metric):
    """Epoch means of each task's loss (`<task>_loss`, over present rows, as Keras logs them) and of the
    weight it got (`weight/<task>`: the factor on that task's unweighted loss, λ_t times the method's).

    Internal to `MultiTaskModel` (made by `set_weighting`, never in a saved config), so not registered."""

    def __init__(self, task_names: Sequence[str] = (), name: str = "task_logs", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.task_names = tuple(task_names)
        count = max(len(self.task_names), 1)
        self.loss_sum = self.add_variable(shape=(count,), initializer="zeros", name="loss_sum")
        self.loss_rows = self.add_variable(shape=(count,), initializer="zeros", name="loss_rows")
        self.weight_sum = self.add_variable(shape=(count,), initializer="zeros", name="weight_sum")
        self.steps = self.add_variable(shape=(), initializer="zeros", name="steps")

    def update_state(self, losses: Any, rows: Any, weights: Any) -> None:
        losses = ops.cast(ops.stack(list(losses)) if isinstance(losses, (list, tuple)) else losses, "float32")
        rows = ops.cast(ops.stack(list(rows)) if isinstance(rows, (list, tuple)) else rows, "float32")
        self.loss_sum.assign_add(losses * rows)
        self.loss_rows.assign_add(rows)
        self.weight_sum.assign_add(ops.cast(weights, "float32"))
        self.steps.assign_add(1.0)

    def result(self) -> dict[str, Any]:
        losses = ops.divide_no_nan(self.loss_sum, self.loss_rows)
        weights = ops.divide_no_nan(self.weight_sum, self.steps)
        logs = {}
        for t, name in enumerate(self.task_names):
            logs[f"{name}_loss"] = losses[t]
        for t, name in enumerate(self.task_names):
            logs[f"weight/{name}"] = weights[t]
        return logs

    def reset_state(self) -> None:
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self) -> dict[str, Any]:
        return {"task_names": list(self.task_names), "name": self.name}


def weighting_of(model: Any) -> Any:
    """The model's `mk.weighting` method (set by `set_weighting`), or None.

    Read without Keras's attribute machinery: from the instance `__dict__` on TensorFlow and JAX, and
    from `torch.nn.Module`'s sub-module table `_modules` on PyTorch, where Keras layers are torch
    modules and assigning one as an attribute stores it there, not in `__dict__`.
    """
    namespace = getattr(model, "__dict__", {})
    method = namespace.get("weighting")
    if method is None:
        modules = namespace.get("_modules")
        if isinstance(modules, dict):
            method = modules.get("weighting")
    return method
