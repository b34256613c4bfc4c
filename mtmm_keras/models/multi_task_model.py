"""MultiTaskModel: the functional model the builders return, with a faster `fit` for in-memory data."""

from __future__ import annotations

import keras

from mtmm_keras.models.in_memory_fit import InMemoryFitMixin


@keras.saving.register_keras_serializable(package="mtmm")
class MultiTaskModel(InMemoryFitMixin, keras.Model):
    """A functional `keras.Model` (same constructor, same outputs) whose `fit` streams array inputs
    through one tf.data pipeline for all epochs on the TensorFlow backend; see `InMemoryFitMixin`."""
