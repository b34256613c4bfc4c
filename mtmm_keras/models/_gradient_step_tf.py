"""The gradient-level train step on the TensorFlow backend (one compiled step, T gradient calls).

One persistent tape records the forward pass; each task's λ-scaled loss is differentiated once over
the trainable variables (T backward passes, plus one for the regularization losses when the model has
them). Over the shared variables (`MultiTaskModel.shared_variables`) the per-task gradients form the
Jacobian J; the weighting turns G = J Jᵀ into w and the shared variables get wᵀJ. Every other
variable gets Σ_t ∇(λ_t L_t), as under static weighting.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from mtmm_keras.models import _gradient_step, _task_losses


def _dense(gradient: Any) -> Any:
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


def train_step(model: Any, data: Any) -> Any:
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    plan = model._task_plan()
    lambdas = [task.weight for task in plan]
    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=True)  # Layer.__call__ passes `training` on only where `call` takes it
        means, counts = _task_losses.compute_task_losses(plan, y, y_pred, sample_weight)
        scaled = [mean * lam for mean, lam in zip(means, lambdas)]
        extras = model._extra_losses()
        extra = tf.add_n(extras) if extras else None
    variables = model.trainable_variables
    per_task = [[_dense(g) for g in tape.gradient(loss, variables)] for loss in scaled]
    extra_grads = tape.gradient(extra, variables) if extra is not None else [None] * len(variables)
    del tape
    shared_ids = {id(v) for v in model.shared_variables()}
    shared_index = [i for i, v in enumerate(variables) if id(v) in shared_ids]
    stacked = {
        i: tf.stack([g[i] if g[i] is not None else tf.zeros_like(variables[i]) for g in per_task]) for i in shared_index
    }
    task_losses = tf.stack(scaled)
    if shared_index:
        weights = _gradient_step.aggregate(
            model.weighting, _gradient_step.gramian([stacked[i] for i in shared_index]), task_losses, tf.stack(counts)
        )
    else:
        weights = tf.ones((len(plan),), task_losses.dtype)
    weights = tf.stop_gradient(tf.cast(weights, task_losses.dtype))
    gradients = []
    for i, variable in enumerate(variables):
        if i in stacked:
            gradient = _gradient_step.combine(stacked[i], weights)
        else:
            parts = [g[i] for g in per_task if g[i] is not None]
            gradient = tf.add_n(parts) if parts else None
        if extra_grads[i] is not None:
            gradient = _dense(extra_grads[i]) if gradient is None else gradient + _dense(extra_grads[i])
        gradients.append(gradient)
    model.optimizer.apply_gradients(zip(gradients, variables))
    total = tf.reduce_sum(weights * task_losses) + (extra if extra is not None else 0.0)
    _track_loss(model, total, tf.shape(tf.nest.flatten(x)[0])[0])
    model._task_logs.update_state(means, counts, ops.cast(weights, "float32") * tf.constant(lambdas, "float32"))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _track_loss(model: Any, total: Any, batch_size: Any) -> None:
    """Update Keras's `loss` metric (the trainer's private `_loss_tracker`, the first of `model.metrics`)."""
    tracker = _gradient_step.loss_tracker(model)
    tracker.update_state(total, sample_weight=batch_size)

