"""`Task`: one prediction target of a multi-task model (its head, loss, weight λ_t and metrics)."""

from __future__ import annotations

import dataclasses
import keyword
import numbers
import re
from typing import Any, Sequence

import keras

from mtmm_keras import _checks

# Losses that expect probabilities by default; with a linear head (activation=None)
# the task builds them with from_logits=True, which is both faster and more stable.
_LOGIT_LOSSES = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "binary_focal_crossentropy": keras.losses.BinaryFocalCrossentropy,
}
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _known_loss_names() -> list[str]:
    return sorted(
        name
        for name, obj in vars(keras.losses).items()
        if not name.startswith("_") and name.islower() and callable(obj) and name not in {"get", "serialize", "deserialize"}
    )


@dataclasses.dataclass(frozen=True)
class Task:
    """One task head: `units` outputs, trained with `loss`, weighted by `weight` (λ_t) in the total loss.

    `activation=None` gives a linear head; cross-entropy losses named by string are then
    built with `from_logits=True` and the matching metrics read logits correctly.

    `missing_label` marks rows whose label for this task is unknown; the task's loss and metrics
    average over the other rows only (a multi-task data set rarely has every label for every row).
    "auto" (default): NaN, and also −1 when the loss takes sparse class ids (sparse categorical
    cross-entropy; binary labels of −1 stay an error); a number: exactly that value (e.g. -100);
    None: labels are never missing (NaN labels are refused by `fit`). A row is missing when all of
    its label values are the marker (NaN in only some of a row's values is refused by `fit`).
    """

    name: str
    units: int
    loss: Any = "mse"
    weight: float = 1.0
    activation: str | None = None
    metrics: Sequence[Any] = ()
    missing_label: Any = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_PATTERN.match(self.name) or keyword.iskeyword(self.name):
            raise ValueError(
                f"Task `name` must be a non-empty identifier (letters, digits, '_'; not starting with a digit), got {self.name!r}."
            )
        _checks.positive_int(self.units, f"Task({self.name!r}).units")
        object.__setattr__(self, "weight", _checks.non_negative_float(self.weight, f"Task({self.name!r}).weight"))
        if self.activation is not None:
            try:
                keras.activations.get(self.activation)
            except (ValueError, TypeError) as err:
                raise ValueError(f"Task({self.name!r}).activation: unknown activation {self.activation!r}.") from err
        object.__setattr__(self, "missing_label", _missing_label(self.missing_label, f"Task({self.name!r}).missing_label"))
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        self.keras_loss()  # fail now, not at compile time
        self.keras_metrics()

    @property
    def from_logits(self) -> bool:
        """True when the head is linear (`activation=None`), so losses and metrics given by name read logits."""
        return self.activation is None

    def build_head(self, features: Any) -> Any:
        """Apply this task's Dense head (named after the task) to `features`.

        Under a mixed-precision policy (`keras.config.set_dtype_policy("mixed_float16")` or "mixed_bfloat16") the
        head computes in float32, as Keras's mixed-precision guide advises: outputs, losses and exported artifacts
        stay float32 while the layers below run in half precision."""
        return keras.layers.Dense(self.units, activation=self.activation, name=self.name,
                                  dtype=self.head_dtype())(features)

    @staticmethod
    def head_dtype() -> str | None:
        """The dtype of a task head under the current policy: "float32" under a mixed-precision policy (outputs,
        losses and exports stay float32), else None (the policy's own)."""
        return "float32" if keras.config.dtype_policy().name.startswith("mixed_") else None

    def keras_loss(self) -> keras.losses.Loss | Any:
        """The Keras loss object for this task (strings resolved, logits handled)."""
        loss = self.loss
        if isinstance(loss, str):
            key = loss.lower()
            if key in _LOGIT_LOSSES:
                return _LOGIT_LOSSES[key](from_logits=self.from_logits, name=f"{self.name}_loss")
            try:
                return keras.losses.get(key)
            except (ValueError, TypeError):
                raise ValueError(
                    f"Task({self.name!r}).loss: unknown loss {loss!r}. Valid names include: "
                    + ", ".join(_known_loss_names())
                ) from None
        if isinstance(loss, keras.losses.Loss) or callable(loss):
            return loss
        raise TypeError(f"Task({self.name!r}).loss must be a loss name, a keras.losses.Loss or a callable, got {loss!r}.")

    def keras_metrics(self, named: bool = False) -> list[Any]:
        """Metric objects for this task; 'accuracy'/'auc' are adapted to logits when the head is linear.

        `named=True` (a model with this one task: Keras then adds no output prefix) names metrics given by string
        `<task>_<metric>` (e.g. `digit_accuracy`), as a multi-task model logs them, so `monitor="val_digit_accuracy"`
        finds them whatever the number of tasks."""
        if named:
            return [self._named_metric(m) if isinstance(m, str) else m for m in self.keras_metrics()]
        resolved = []
        for metric in self.metrics:
            if isinstance(metric, str) and self.from_logits:
                key = metric.lower()
                loss_name = self.loss.lower() if isinstance(self.loss, str) else ""
                if key in ("accuracy", "acc") and "binary" in loss_name:
                    resolved.append(keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy"))
                    continue
                if key == "auc":
                    resolved.append(keras.metrics.AUC(from_logits=True, name="auc"))
                    continue
            if isinstance(metric, str):
                try:
                    if metric.lower() not in ("accuracy", "acc", "crossentropy", "ce"):
                        keras.metrics.get(metric)
                except (ValueError, TypeError):
                    raise ValueError(f"Task({self.name!r}).metrics: unknown metric {metric!r}.") from None
            resolved.append(metric)
        return resolved

    def _named_metric(self, metric: str) -> Any:
        key = "accuracy" if metric.lower() == "acc" else metric.lower()
        name = f"{self.name}_{key}"
        loss = self.loss.lower() if isinstance(self.loss, str) else ""
        if key == "accuracy":
            if "sparse_categorical" in loss:
                return keras.metrics.SparseCategoricalAccuracy(name=name)
            if "categorical" in loss:
                return keras.metrics.CategoricalAccuracy(name=name)
            if "binary" in loss:
                return keras.metrics.BinaryAccuracy(threshold=0.0 if self.from_logits else 0.5, name=name)
            return metric  # Keras picks the accuracy from the label shapes: it cannot be named here
        if key == "auc":
            return keras.metrics.AUC(from_logits=self.from_logits, name=name)
        if key in ("crossentropy", "ce"):
            return metric
        found = keras.metrics.get(metric)
        if isinstance(found, keras.metrics.Metric):
            return found.__class__.from_config({**found.get_config(), "name": name})
        return keras.metrics.MeanMetricWrapper(found, name=name)

    def get_config(self) -> dict[str, Any]:
        """A JSON-friendly description (used by zoo recipes)."""
        return {
            "name": self.name,
            "units": self.units,
            "loss": keras.saving.serialize_keras_object(self.loss) if not isinstance(self.loss, str) else self.loss,
            "weight": self.weight,
            "activation": self.activation,
            "metrics": [m if isinstance(m, str) else keras.saving.serialize_keras_object(m) for m in self.metrics],
            "missing_label": self.missing_label,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Task":
        """Re-create the object from the dict `get_config()` returned (what `keras.models.load_model` calls)."""
        config = dict(config)
        if not isinstance(config.get("loss"), str):
            config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        config["metrics"] = tuple(
            m if isinstance(m, str) else keras.saving.deserialize_keras_object(m) for m in config.get("metrics", ())
        )
        return cls(**config)


def _missing_label(value: Any, name: str) -> Any:
    """'auto', None, 'nan' (float NaN is stored so, JSON has no NaN) or a finite number."""
    if value is None or value == "auto":
        return value
    if isinstance(value, str):
        if value.lower() == "nan":
            return "nan"
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        if value != value:  # NaN
            return "nan"
        if abs(float(value)) != float("inf"):
            return int(value) if float(value).is_integer() else float(value)
    raise ValueError(f"`{name}` must be 'auto', None, NaN or a finite number (the label value that marks a missing label), got {value!r}.")


def validate_tasks(tasks: Any) -> tuple[Task, ...]:
    """Check a task list: non-empty, only `Task`s, unique names."""
    if isinstance(tasks, Task):
        tasks = (tasks,)
    if not isinstance(tasks, (list, tuple)):
        raise TypeError(f"`tasks` must be a list of mk.Task, got {type(tasks).__name__}.")
    if not tasks:
        raise ValueError("`tasks` is empty: give at least one mk.Task(name, units, ...).")
    for i, task in enumerate(tasks):
        if not isinstance(task, Task):
            raise TypeError(f"`tasks[{i}]` must be an mk.Task, got {type(task).__name__} {task!r}.")
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"`tasks` has duplicate task names {duplicates}: every task needs its own name.")
    return tuple(tasks)

