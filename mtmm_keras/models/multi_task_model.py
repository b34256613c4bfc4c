"""MultiTaskModel: the functional model the builders return; per-task losses with missing labels, a
loss-balancing / gradient-aggregation method (`mk.weighting`) inside plain `fit`, and a faster `fit`
for in-memory data."""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from mtmm_keras.distribute.scaling import scale_for_replicas
from mtmm_keras.models import _compiled_loss, _task_losses
from mtmm_keras.models._task_losses import weighting_of
from mtmm_keras.models._keras_format import KerasFormatSaveMixin
from mtmm_keras.distribute.multiworker import MultiWorkerFitMixin
from mtmm_keras.models.graph_metrics import GraphMetricsMixin
from mtmm_keras.models.in_memory_fit import InMemoryFitMixin


class _WeightingEpochEnd(keras.callbacks.Callback):
    """Hands the epoch's mean per-task training losses to the weighting (DWA's loss history)."""

    def __init__(self, model: "MultiTaskModel") -> None:
        super().__init__()
        self._owner = model

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        names = self._owner._task_logs.task_names
        if all(f"{name}_loss" in logs for name in names):
            self._owner.weighting.on_epoch_end([float(logs[f"{name}_loss"]) for name in names])


@keras.saving.register_keras_serializable(package="mtmm")
class MultiTaskModel(KerasFormatSaveMixin, MultiWorkerFitMixin, InMemoryFitMixin, GraphMetricsMixin, keras.Model):
    """A functional `keras.Model` (same constructor, same outputs) for multi-task training.

    - Tasks: `task_configs` (each `Task.get_config()`) are saved in the model's config, so tools can
      tell a classification head from a regression head without a compiled loss.
    - Weighting: `set_weighting(...)` (the builders' `weighting=`) picks how the per-task losses
      become one update, `mk.weighting` (static λ_t by default). Loss-level methods combine the
      per-task losses in `compute_loss`; gradient-level methods replace the train step (one gradient
      per task over the shared variables, see `shared_variables`). The method and its state are
      saved with the model. `history.history` holds `<task>_loss` and `weight/<task>` every epoch.
    - Missing labels: each task's loss and metrics average over the rows where its label is present
      (NaN, −1 for class labels, or `Task.missing_label`; see `mtmm_keras.models._task_losses`).
    - `fit` streams array inputs through one tf.data pipeline on TensorFlow (`InMemoryFitMixin`).
    - Epoch-end metric read-out and reset are one compiled call each on TensorFlow (`GraphMetricsMixin`).
    """

    task_configs: tuple[dict[str, Any], ...] = ()

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """Record the builder's `Task`s (stored as plain configs, outside Keras's attribute tracking)."""
        object.__setattr__(self, "task_configs", tuple(task.get_config() for task in tasks))

    # ------------------------------------------------------------------------------------ weighting

    @property
    def task_names(self) -> list[str]:
        """The output names (Keras's public `output_names`: dict keys, or the output layers' names)."""
        return list(self.output_names)

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """Keras's `compile`; also records its `loss_weights` argument (the λ_t the weighting multiplies
        in), read at trace time where `get_compile_config()` cannot serialize the optimizer. On the
        PyTorch backend `steps_per_execution` > 1 is a ValueError naming it (`mk.distribute.check_compile_arguments`)."""
        import inspect

        from mtmm_keras.distribute import check_compile_arguments

        bound = inspect.signature(keras.Model.compile).bind(self, *args, **kwargs)
        check_compile_arguments(bound.arguments.get("steps_per_execution", 1))  # >1 on torch: our error, now
        object.__setattr__(self, "compiled_loss_weights", bound.arguments.get("loss_weights"))
        super().compile(*args, **kwargs)

    def set_weighting(self, weighting: Any = "static", **kwargs: Any) -> None:
        """Use `weighting` (a method name from `mk.weighting.names()` with its keyword arguments, or an
        `mk.weighting.Weighting`) to combine the tasks' losses. Call it before `compile`: a method with
        trainable state (uncertainty's log σ²) adds variables the optimizer must see."""
        from mtmm_keras import weighting as weighting_lib

        method = weighting_lib.get(weighting, **kwargs)
        names = self.task_names
        if method.num_tasks is None:
            method.build_for_tasks(len(names))
        elif method.num_tasks != len(names):
            raise ValueError(
                f"`weighting` {method.name!r} was built for {method.num_tasks} tasks; this model has "
                f"{len(names)} ({names})."
            )
        old = weighting_of(self)
        if old is not None and old is not method:
            layers = getattr(self, "_layers", None)
            if isinstance(layers, list) and old in layers:
                layers.remove(old)
        self.weighting = method
        if getattr(self, "_task_logs", None) is None:
            self._task_logs = _task_losses.TaskLogs(names, name="task_logs")
        self.train_function = self.test_function = None

    def _weighting_active(self) -> bool:
        return weighting_of(self) is not None and getattr(self, "compiled", False) and self.loss is not None

    def _gradient_level(self) -> bool:
        return self._weighting_active() and getattr(self.weighting, "level", "loss") == "gradient"

    def _task_plan(self) -> list[_task_losses.TaskLoss]:
        return _task_losses.task_losses_of(self)

    def shared_variables(self) -> list[Any]:
        """Trainable variables upstream of two or more task outputs: the ones a gradient-level method
        aggregates over; every other variable gets Σ_t ∇(λ_t L_t). Read with public Keras only (a
        functional `keras.Model(inputs, output)` per output lists the variables that output depends
        on); computed once per model and cached (the graph of a functional model does not change)."""
        cached = self.__dict__.get("_shared_variables_cache")
        if cached is not None:
            return list(cached)
        output = self.output
        tensors = list(output.values()) if isinstance(output, dict) else list(self.outputs)
        owners: dict[int, int] = {}
        for tensor in tensors:
            for key in {id(v) for v in keras.Model(self.inputs, tensor).trainable_variables}:
                owners[key] = owners.get(key, 0) + 1
        shared = [v for v in self.trainable_variables if owners.get(id(v), 0) >= 2]
        object.__setattr__(self, "_shared_variables_cache", tuple(shared))
        return shared

    def _extra_losses(self, losses: Any = None) -> list[Any]:
        """The model's `add_loss`/regularization terms, each summed to a float scalar and divided by the
        replica count under tf.distribute (as Keras's `compute_loss` adds them)."""
        result = []
        for loss in self.losses if losses is None else losses:
            loss = ops.convert_to_tensor(loss)
            if not keras.backend.is_float_dtype(loss.dtype):
                loss = ops.cast(loss, keras.backend.floatx())
            result.append(scale_for_replicas(ops.sum(loss)))  # once in total over the replicas, as Keras does
        return result

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Σ over tasks as the weighting combines them (static: Σ_t λ_t L_t), each L_t a mean over
        the rows where the task's label is present, plus the model's regularization losses unweighted."""
        if not self._weighting_active():
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        plan = self._task_plan()
        if not plan:
            raise ValueError(
                f"No task loss to compute: none of this model's outputs {self.task_names} has a loss in "
                f"`compile(loss=...)` (got {self.loss!r}). Give a loss per output name."
            )
        # Unscaled per-task means over the global batch's present rows (all-reduced under tf.distribute)
        # for the logs and the weighting; the combined total is scaled once for the replica count, so the
        # replicas' totals (which the gradient all-reduce sums) add up to the global loss, trainable terms
        # (uncertainty's ½·s) included.
        _compiled_loss.mark_unused(self)  # combined here, never by Keras's compiled loss: no re-trace per fit
        means, counts = _task_losses.compute_task_losses(plan, y, y_pred, sample_weight)
        means, counts = _task_losses.global_task_losses(means, counts)
        lambdas = [task.weight for task in plan]
        scaled = ops.stack([ops.multiply(mean, lam) for mean, lam in zip(means, lambdas)])
        if getattr(self.weighting, "level", "loss") == "gradient":
            # Gradient-level methods act in the train step; the loss they report (and evaluate) is Σ_t λ_t L_t.
            from mtmm_keras.weighting.static import Static

            total, weights = Static.combine(self.weighting, scaled)
        else:
            total, weights = self.weighting.combine(scaled, training=training)
        total = scale_for_replicas(total)
        self._task_logs.update_state(means, counts, ops.cast(weights, "float32") * ops.convert_to_tensor(lambdas, "float32"))
        losses = [total] + self._extra_losses()
        return losses[0] if len(losses) == 1 else ops.sum(losses)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras's compiled metrics, each task's over the rows where its label is present."""
        if not self._weighting_active() or getattr(self, "_compile_metrics", None) is None:
            return super().compute_metrics(x, y, y_pred, sample_weight)
        plan = self._task_plan()
        safe, masks = _task_losses.masked_labels(plan, y)
        if all(mask is None for mask in masks.values()):
            return super().compute_metrics(x, y, y_pred, sample_weight)
        if not _update_compiled_metrics(self._compile_metrics, y, safe, y_pred, masks, sample_weight):
            # Keras's own update would count the missing rows (NaN or marker labels) in every metric.
            raise RuntimeError(
                "Cannot compute this model's compiled metrics over the rows where each task's label is present: "
                "Keras's compiled-metrics internals (`CompileMetrics._resolved_output_names`, `_flat_metrics`, "
                "`_flat_weighted_metrics`) are not as expected in this Keras version, and its own update would "
                "count the missing-label rows. Compile without `metrics` (the per-task `<task>_loss` logs still "
                "skip missing rows), or pass labels without missing values."
            )
        return self.get_metrics_result()

    def train_step(self, *args: Any) -> Any:
        """One training step: Keras's own for loss-level weighting, per-task gradients for gradient-level methods."""
        if self._gradient_level():
            if keras.backend.backend() == "jax":
                from mtmm_keras.models import _gradient_step_jax

                return _gradient_step_jax.train_step(self, *args)
            if keras.backend.backend() == "tensorflow":
                from mtmm_keras.models import _gradient_step_tf

                return _gradient_step_tf.train_step(self, *args)
            if keras.backend.backend() == "torch":
                from mtmm_keras.models import _gradient_step_torch

                return _gradient_step_torch.train_step(self, *args)
            raise NotImplementedError(
                f"Gradient-level weighting ({self.weighting.method_name!r}) runs on the TensorFlow, JAX and PyTorch "
                f"backends; this is {keras.backend.backend()!r}. Use a loss-level method (static, uncertainty, dwa, rlw)."
            )
        return super().train_step(*args)

    def fit(self, x: Any = None, y: Any = None, batch_size: Any = None, epochs: int = 1, verbose: Any = "auto",
            callbacks: Any = None, **kwargs: Any) -> Any:
        """Keras's `fit`, refusing gradient-level weighting under a distribution strategy or loss scaling first."""
        method = weighting_of(self)
        if self._gradient_level():
            from mtmm_keras.distribute import model_strategy

            if model_strategy(self) is not None:
                raise ValueError(
                    f"Gradient-level weighting ({method.method_name!r}) is not supported under a tf.distribute "
                    "strategy yet: each replica would aggregate its own local gradients, not the global batch's. "
                    "Use a loss-level method (static, uncertainty, dwa, rlw) there, or JAX with keras.distribution."
                )
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                raise ValueError(
                    f"Gradient-level weighting ({method.method_name!r}) does not support loss scaling (a "
                    "`keras.optimizers.LossScaleOptimizer`, which `compile` uses under the 'mixed_float16' "
                    "dtype policy): its per-task gradients are not loss-scaled. Use a loss-level method "
                    "(static, uncertainty, dwa, rlw) with mixed_float16, or the 'mixed_bfloat16' policy "
                    "(no loss scaling) or float32 with this method."
                )
        if method is not None and type(method).on_epoch_end is not _base_on_epoch_end():
            callbacks = list(callbacks or []) + [_WeightingEpochEnd(self)]
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks, **kwargs)

    # ------------------------------------------------------------------------------------ saving

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        if self.task_configs:
            config["tasks"] = list(self.task_configs)
        method = weighting_of(self)
        if method is not None:
            config["weighting"] = keras.saving.serialize_keras_object(method)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> "MultiTaskModel":
        """Re-create the object from the dict `get_config()` returned (what `keras.models.load_model` calls)."""
        config = dict(config)
        tasks = config.pop("tasks", ())
        weighting = config.pop("weighting", None)
        model = super().from_config(config, custom_objects=custom_objects)
        object.__setattr__(model, "task_configs", tuple(tasks))
        if weighting is not None:
            import mtmm_keras.weighting  # noqa: F401 - registers the methods before deserializing

            model.set_weighting(keras.saving.deserialize_keras_object(weighting, custom_objects=custom_objects))
        elif tasks:
            model.set_weighting("static")  # saved before weighting existed: today's λ_t, with missing labels
        return model


def _base_on_epoch_end() -> Any:
    from mtmm_keras.weighting import Weighting

    return Weighting.on_epoch_end


def _update_compiled_metrics(compiled: Any, y: Any, safe: dict, y_pred: Any, masks: dict, sample_weight: Any) -> bool:
    """Update Keras's `CompileMetrics` task by task with the presence mask as sample weight (weighted
    metrics get mask × sample weight). False when its internals are not as expected (then the caller
    falls back to Keras's own update, which counts missing rows)."""
    try:
        if not compiled.built:
            compiled.build(y, y_pred)
        names = compiled._resolved_output_names
        plain, weighted = compiled._flat_metrics, compiled._flat_weighted_metrics
    except AttributeError:
        return False
    if names is None and len(plain) == 1 and len(safe) == 1:
        names = list(safe)  # one output: Keras resolves no names
    if names is None or len(names) != len(plain):
        return False
    if isinstance(y, (list, tuple)) and len(y) == len(names):
        y = dict(zip(names, y))  # labels in output order
    if isinstance(y_pred, (list, tuple)) and len(y_pred) == len(names):
        y_pred = dict(zip(names, y_pred))
    if not isinstance(y, dict):
        y = {names[0]: y} if len(names) == 1 else None
    if not isinstance(y_pred, dict):
        y_pred = {names[0]: y_pred} if len(names) == 1 else None
    if y is None or y_pred is None:
        return False
    for index, name in enumerate(names):
        label = safe.get(name, y.get(name))
        mask = masks.get(name)
        weight = sample_weight
        if isinstance(sample_weight, dict):
            weight = sample_weight.get(name)
        elif isinstance(sample_weight, (list, tuple)):
            weight = sample_weight[index]
        if plain[index]:
            plain[index].update_state(label, y_pred[name], sample_weight=mask)
        if weighted[index]:
            both = mask if weight is None else (ops.cast(weight, "float32") if mask is None else mask * ops.cast(weight, "float32"))
            weighted[index].update_state(label, y_pred[name], sample_weight=both)
    return True
