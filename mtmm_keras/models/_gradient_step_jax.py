"""The gradient-level train step on the JAX backend: stateless, one jitted step.

`jax.jacrev` differentiates the vector [λ_1 L_1, …, λ_T L_T, regularization] over the trainable
variables in one vectorised backward pass. Over the shared variables (`MultiTaskModel.shared_variables`)
the weighting turns G = J Jᵀ into w and they get wᵀJ; every other variable gets Σ_t ∇(λ_t L_t).
The state it returns is the one Keras's own `JAXTrainer.train_step` returns.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import keras

from mtmm_keras.models import _gradient_step, _task_losses


def train_step(model: Any, state: Any, data: Any) -> Any:
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    plan = model._task_plan()
    lambdas = jnp.asarray([task.weight for task in plan], dtype="float32")
    kwargs = {"training": True} if getattr(model, "_call_has_training_arg", True) else {}  # functional: True

    def task_loss_vector(trainable_values):
        y_pred, new_non_trainable, added = model.stateless_call(
            trainable_values, non_trainable, x, return_losses=True, **kwargs
        )
        mapping = list(zip(model.trainable_variables, trainable_values))
        mapping += list(zip(model.non_trainable_variables, new_non_trainable))
        with keras.StatelessScope(state_mapping=mapping):
            means, counts = _task_losses.compute_task_losses(plan, y, y_pred, sample_weight)
            extras = model._extra_losses(added)
        extra = sum(extras[1:], extras[0]) if extras else jnp.zeros((), "float32")
        means = jnp.stack(means).astype("float32")
        vector = jnp.concatenate([means * lambdas, jnp.reshape(extra, (1,)).astype("float32")])
        return vector, (y_pred, new_non_trainable, means, jnp.stack(counts).astype("float32"), vector)

    jacobian, (y_pred, non_trainable, means, counts, vector) = jax.jacrev(task_loss_vector, has_aux=True)(trainable)
    count = len(plan)
    task_losses = vector[:count]
    shared_ids = {id(v) for v in model.shared_variables()}
    shared_index = [i for i, v in enumerate(model.trainable_variables) if id(v) in shared_ids]
    mapping = list(zip(model.non_trainable_variables, non_trainable))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        if shared_index:
            gramian = _gradient_step.gramian([jacobian[i][:count] for i in shared_index])
            weights = _gradient_step.aggregate(model.weighting, gramian, task_losses, counts)
        else:
            weights = jnp.ones((count,), "float32")
    non_trainable = [
        value if (new := scope.get_current_value(variable)) is None else new
        for variable, value in zip(model.non_trainable_variables, non_trainable)
    ]
    weights = jax.lax.stop_gradient(jnp.asarray(weights, "float32"))
    shared = set(shared_index)
    gradients = []
    for i, stacked in enumerate(jacobian):
        tasks = stacked[:count]
        gradient = _gradient_step.combine(tasks, weights) if i in shared else jnp.sum(tasks, axis=0)
        gradients.append(gradient + stacked[count])
    trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, gradients, trainable)
    total = jnp.sum(weights * task_losses) + vector[count]
    metrics_mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=metrics_mapping) as scope:
        batch = next(i for i in jax.tree_util.tree_leaves(x) if i is not None).shape[0]
        _gradient_step.loss_tracker(model).update_state(total, sample_weight=batch)
        model._task_logs.update_state(means, counts, weights * lambdas)
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
    metrics_variables = [
        variable.value if (new := scope.get_current_value(variable)) is None else new
        for variable in model.metrics_variables
    ]
    return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

