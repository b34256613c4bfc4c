"""How many replicas share a training step, and the per-replica share of a loss term.

Keras's TensorFlow trainer sums the replicas' gradients (`tf.distribute` all-reduce SUM), so a loss
term that every replica computes in full (a regularization penalty on mirrored weights, a loss on the
gathered global batch) must be divided by the replica count to count once. Keras does the same for
its own losses and `add_loss` terms (`scale_loss_for_distribution`, an internal we do not import).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def num_replicas() -> int:
    """Replicas in sync in the current TensorFlow replica context; 1 elsewhere (one device, a
    cross-replica context, or any non-TensorFlow backend: JAX's DataParallel runs one global step)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def scale_for_replicas(value: Any) -> Any:
    """`value / num_replicas()`: the share of a term each replica computes in full, so that the sum
    over replicas (what the trainer's gradient all-reduce adds up) counts it once."""
    replicas = num_replicas()
    if replicas == 1:
        return value
    value = ops.convert_to_tensor(value)
    return ops.multiply(value, ops.cast(1.0 / replicas, value.dtype))
