"""MultiTaskModel: the functional model the builders return, with a faster `fit` for in-memory data."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from mtmm_keras.models.in_memory_fit import InMemoryFitMixin


@keras.saving.register_keras_serializable(package="mtmm")
class MultiTaskModel(InMemoryFitMixin, keras.Model):
    """A functional `keras.Model` (same constructor, same outputs) whose `fit` streams array inputs
    through one tf.data pipeline for all epochs on the TensorFlow backend; see `InMemoryFitMixin`.

    It also remembers its tasks (`task_configs`: each `Task.get_config()`), saved in its config, so
    tools can tell a classification head from a regression head without a compiled loss (the
    exporter judges quantized artifacts that way)."""

    task_configs: tuple[dict[str, Any], ...] = ()

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """Record the builder's `Task`s (stored as plain configs, outside Keras's attribute tracking)."""
        object.__setattr__(self, "task_configs", tuple(task.get_config() for task in tasks))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.task_configs:
            config["tasks"] = list(self.task_configs)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> "MultiTaskModel":
        config = dict(config)
        tasks = config.pop("tasks", ())
        model = super().from_config(config, custom_objects=custom_objects)
        object.__setattr__(model, "task_configs", tuple(tasks))
        return model
