"""`fit` that feeds in-memory arrays through one tf.data pipeline for all epochs (TensorFlow backend).

Keras's TensorFlow trainer builds a fresh tf.data iterator from array inputs at every epoch; for the
small, fast models this library builds, that costs more than the training steps themselves (10–25 ms
per epoch here, ~50 % of `fit`'s wall time on the hard-sharing MLP). The mixin hands Keras the same
array pipeline Keras would build — same batches, same shuffling, same class/sample weights — but
repeated, with `steps_per_epoch`, so a single iterator serves every epoch.
"""

from __future__ import annotations

from typing import Any

import keras

def _array_adapter(x: Any, y: Any, sample_weight: Any, class_weight: Any, batch_size: Any, shuffle: Any) -> Any:
    """Keras's own adapter for in-memory arrays, or None when the inputs are not arrays."""
    try:
        from keras.src.trainers.data_adapters import array_data_adapter
    except ImportError:  # a Keras without this module: use the stock path
        return None
    if not array_data_adapter.can_convert_arrays((x, y, sample_weight)):
        return None
    return array_data_adapter.ArrayDataAdapter(
        x, y, sample_weight=sample_weight, class_weight=class_weight, shuffle=shuffle, batch_size=batch_size
    )


def _split_for_validation(x: Any, y: Any, sample_weight: Any, validation_split: float) -> tuple[tuple, tuple]:
    from keras.src.trainers.data_adapters import array_slicing

    return array_slicing.train_validation_split((x, y, sample_weight), validation_split=validation_split)


class InMemoryFitMixin:
    """Mixin for `keras.Model` subclasses: one repeated tf.data pipeline per `fit` call for array inputs.

    Applies on the TensorFlow backend when `x`/`y`/`sample_weight` are arrays (numpy, tensors, dicts or
    lists of them), `steps_per_epoch` is not given, no distribution strategy is active and the number
    of batches per epoch is a multiple of `steps_per_execution` (otherwise Keras's multi-step loop
    would run past the end of an epoch). In every other case `fit` is Keras's own. Batches, their
    order when `shuffle=False`, weighting and validation are exactly those of the stock `fit`.
    """

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: Any = "auto",
        callbacks: Any = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: Any = True,
        class_weight: Any = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
    ) -> Any:
        stock = dict(
            x=x, y=y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
            class_weight=class_weight, sample_weight=sample_weight, initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
            validation_batch_size=validation_batch_size, validation_freq=validation_freq,
        )
        plan = self._in_memory_plan(stock)
        if plan is None:
            return super().fit(**stock)
        dataset, steps, validation_data = plan
        stock.update(x=dataset, y=None, sample_weight=None, class_weight=None, batch_size=None, shuffle=False,
                     validation_split=0.0, validation_data=validation_data, steps_per_epoch=steps)
        return super().fit(**stock)

    def _in_memory_plan(self, args: dict) -> tuple[Any, int, Any] | None:
        """(repeated dataset, batches per epoch, validation data), or None to use Keras's stock `fit`."""
        if keras.backend.backend() != "tensorflow" or getattr(self, "run_eagerly", False):
            return None
        if args["steps_per_epoch"] is not None or args["x"] is None:
            return None
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return None
        from keras.src.backend import config as backend_config

        if backend_config.max_steps_per_epoch() or backend_config.max_epochs():
            return None  # Keras's debugging caps: leave them to Keras
        x, y, sample_weight = args["x"], args["y"], args["sample_weight"]
        validation_data = args["validation_data"]
        try:
            adapter = _array_adapter(x, y, sample_weight, args["class_weight"], args["batch_size"], args["shuffle"])
        except Exception:  # malformed inputs: let the stock path raise its own error
            return None
        if adapter is None:
            return None
        if args["validation_split"] and validation_data is None:
            (x, y, sample_weight), validation_data = _split_for_validation(x, y, sample_weight, args["validation_split"])
            adapter = _array_adapter(x, y, sample_weight, args["class_weight"], args["batch_size"], args["shuffle"])
        steps = adapter.num_batches
        steps_per_execution = int(getattr(self, "steps_per_execution", 1) or 1)
        if not steps or steps % steps_per_execution:
            return None
        return _without_autotune(adapter.get_tf_dataset().repeat()), steps, validation_data


def _without_autotune(dataset: Any) -> Any:
    """Fixed parallelism instead of tf.data autotuning: deleting an autotuned iterator waits for the
    autotuner's thread (50–250 ms per `fit` measured here, as long as 500 training steps)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
