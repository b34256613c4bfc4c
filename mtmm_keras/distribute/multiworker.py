"""Workaround for keras-team/keras#20585: Keras 3's TensorFlow `fit` fails under MultiWorkerMirroredStrategy.

Before the first step, Keras's TensorFlow trainer (`_maybe_symbolic_build`, seen on Keras 3.7–3.15)
takes one batch from the distributed iterator and, to get a plain batch for building the optimizer
and metrics symbolically, reduces it across replicas with `strategy.reduce("MEAN", batch)`. Under
MultiWorkerMirroredStrategy that reduce is a collective over a `PerReplica` data batch and fails:
"ValueError: Attempt to convert a value (PerReplica:{...}) with an unsupported type". Only the
batch's shapes and dtypes matter to that build, so this replica's own slice of the batch serves
as well and needs no communication; `MultiWorkerFitMixin` hands Keras that slice instead.

The per-step logs then fail too: Keras's step function reduces each replica's logs with
`strategy.reduce("MEAN", value, axis=0)` on a multi-worker strategy (`reduce_per_replica`,
reduction "auto" hard-coded), and a scalar has no axis 0 ("ValueError: Invalid reduction
dimension 0 for input with 0 dimensions"). The mixin's `compute_metrics` hands each scalar log
over as a one-element vector there, so that reduce averages the replicas' values, as Keras's
single-worker "mean" does.

The overrides are engaged only for a multi-worker strategy with Keras's iterator path; everything
else (and a Keras without that method, where the override is simply never called) is Keras's own.
tests/test_distribute_multiworker.py checks that stock Keras still fails, so the mixin goes once a
Keras release fixes it.
"""

from __future__ import annotations

from typing import Any

import keras


def is_multi_worker(strategy: Any) -> bool:
    """True for a `tf.distribute.MultiWorkerMirroredStrategy` (the strategy keras#20585 breaks)."""
    if strategy is None or keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def local_batch(strategy: Any, batch: Any) -> Any:
    """This replica's slice of every distributed value in `batch` (plain values pass through)."""
    import tensorflow as tf

    def first_local(value: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(first_local, batch)


class MultiWorkerFitMixin:
    """Mixin for `keras.Model` subclasses: `fit`/`evaluate` work under MultiWorkerMirroredStrategy
    on Keras versions with keras-team/keras#20585 (see the module docstring)."""

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        logs = super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        if not is_multi_worker(getattr(self, "_distribute_strategy", None)):
            return logs
        import tensorflow as tf

        if tf.distribute.in_cross_replica_context():
            return logs
        return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> Any:
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is None or not is_multi_worker(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:  # as Keras does: one batch from the first epoch's iterator
            data_batch = local_batch(strategy, next(batches))
            break
        return super()._maybe_symbolic_build(iterator=None, data_batch=data_batch)
