"""Workaround for keras-team/keras#20585: Keras 3's TensorFlow `fit` fails under MultiWorkerMirroredStrategy.

Reported since Keras 3.7 / TF 2.16, reproduced here on Keras 3.15 with two workers on 127.0.0.1.
Two steps fail:

1. Before the first step Keras's TensorFlow trainer (`_maybe_symbolic_build`) takes one batch from
   the distributed iterator and reduces it across replicas, `strategy.reduce("MEAN", batch)`, to
   get a plain batch for building the optimizer and metrics symbolically. Under a multi-worker
   strategy that reduce fails: "ValueError: Attempt to convert a value (PerReplica:{...}) with an
   unsupported type". Only the batch's shapes and dtypes matter to that build, so this replica's
   own slice serves as well and needs no communication; the mixin hands Keras that slice.
2. Each step's logs are reduced with `strategy.reduce("MEAN", value, axis=0)` on a multi-worker
   strategy (`reduce_per_replica`, reduction "auto" hard-coded), and a scalar has no axis 0:
   "ValueError: Invalid reduction dimension 0 for input with 0 dimensions". The mixin's
   `get_metrics_result` (what a train/test step returns, through `compute_metrics`) gives each
   scalar log as a one-element vector inside a replica, so that reduce averages the replicas'
   values, as Keras's single-worker "mean" does.

Both overrides act only under a multi-worker strategy (inside a replica, for the second); all else
is Keras's own; a Keras that renames a hooked method (`KERAS_HOOKS`) gets a warning at `fit` instead of the fix.
tests/test_distribute_multiworker.py has one canary per step that fails once Keras fixes it.
"""

from __future__ import annotations

import warnings
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


# The Keras trainer methods the two overrides hook (internal names: a Keras that renames them skips the workaround).
KERAS_HOOKS = ("_maybe_symbolic_build", "get_metrics_result")


def missing_hooks() -> list[str]:
    """The `KERAS_HOOKS` this Keras's model class no longer has (the workaround does not apply for those)."""
    return [name for name in KERAS_HOOKS if not hasattr(keras.Model, name)]


def warn_if_workaround_missing(strategy: Any) -> None:
    """Under a multi-worker strategy, warn when a hook the workaround needs is gone (instead of failing silently)."""
    missing = missing_hooks() if is_multi_worker(strategy) else []
    if missing:
        warnings.warn(
            f"mtmm_keras's MultiWorkerMirroredStrategy workaround (keras-team/keras#20585) cannot apply: this Keras "
            f"has no {', '.join(missing)}. If fit fails under the strategy, pin keras<={keras.__version__} or train "
            "with one worker.", RuntimeWarning, stacklevel=3)


class MultiWorkerFitMixin:
    """Mixin for `keras.Model` subclasses: `fit`/`evaluate` work under MultiWorkerMirroredStrategy
    on Keras versions with keras-team/keras#20585 (see the module docstring)."""

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        """Keras's `fit`, warning first when the multi-worker workaround cannot hook this Keras version."""
        warn_if_workaround_missing(getattr(self, "_distribute_strategy", None))
        return super().fit(*args, **kwargs)

    def get_metrics_result(self) -> Any:
        """Keras's logs, with per-replica values reduced across workers under a multi-worker strategy."""
        logs = super().get_metrics_result()
        if not is_multi_worker(getattr(self, "_distribute_strategy", None)):
            return logs
        import tensorflow as tf

        if tf.distribute.in_cross_replica_context():
            return logs  # the end-of-epoch read: Keras aggregates the metric variables itself
        return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> Any:
        # Any tf.distribute strategy, not only multi-worker: Keras's `strategy.reduce("MEAN", batch)` also
        # fails under MirroredStrategy when the first batch splits unevenly over the replicas (e.g. a
        # 27-row validation split on 2 replicas: "AddN must have the same size and shape [14,7] != [13,7]").
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is None or strategy is None or keras.backend.backend() != "tensorflow":
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:  # as Keras does: one batch from the first epoch's iterator
            data_batch = local_batch(strategy, next(batches))
            break
        return super()._maybe_symbolic_build(iterator=None, data_batch=data_batch)
