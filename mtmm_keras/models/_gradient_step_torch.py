"""The gradient-level train step on the PyTorch backend (eager, T gradient calls).

One forward pass builds the autograd graph; `torch.autograd.grad` differentiates each task's
λ-scaled loss over the trainable variables' tensors (`Variable.value`), keeping the graph for the
next task (T backward passes, plus one for the regularization losses when the model has them), as
the TensorFlow step does with its persistent tape. Over the shared variables
(`MultiTaskModel.shared_variables`) the per-task gradients form the Jacobian J; the weighting turns
G = J Jᵀ into w and the shared variables get wᵀJ. Every other variable gets Σ_t ∇(λ_t L_t). The
update goes through the optimizer's public `apply`, under `torch.no_grad()` as in Keras's own
`TorchTrainer.train_step`.
"""

from __future__ import annotations

from typing import Any

import keras
import torch
from keras import ops

from mtmm_keras.models import _gradient_step, _task_losses


def _gradients(loss: Any, tensors: list[Any], retain_graph: bool) -> list[Any]:
    """∂loss/∂tensor for each tensor, None where the loss does not depend on it."""
    if not getattr(loss, "requires_grad", False):
        return [None] * len(tensors)
    return list(torch.autograd.grad(loss, tensors, retain_graph=retain_graph, allow_unused=True))


def train_step(model: Any, data: Any) -> Any:
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    plan = model._task_plan()
    lambdas = [task.weight for task in plan]
    y_pred = model(x, training=True)  # Layer.__call__ passes `training` on only where `call` takes it
    means, counts = _task_losses.compute_task_losses(plan, y, y_pred, sample_weight)
    scaled = [mean * lam for mean, lam in zip(means, lambdas)]
    extras = model._extra_losses()
    extra = sum(extras[1:], extras[0]) if extras else None
    variables = model.trainable_variables
    tensors = [variable.value for variable in variables]
    per_task = [_gradients(loss, tensors, retain_graph=True) for loss in scaled]
    extra_grads = _gradients(extra, tensors, retain_graph=False) if extra is not None else [None] * len(variables)
    shared_ids = {id(v) for v in model.shared_variables()}
    shared_index = [i for i, v in enumerate(variables) if id(v) in shared_ids]
    with torch.no_grad():
        stacked = {
            i: torch.stack([g[i] if g[i] is not None else torch.zeros_like(tensors[i]) for g in per_task])
            for i in shared_index
        }
        task_losses = torch.stack([loss.detach() for loss in scaled])
        task_counts = torch.stack([ops.convert_to_tensor(c) for c in counts])
        if shared_index:
            gramian = _gradient_step.gramian([stacked[i] for i in shared_index])
            weights = _gradient_step.aggregate(model.weighting, gramian, task_losses, task_counts)
        else:
            weights = torch.ones((len(plan),), dtype=task_losses.dtype, device=task_losses.device)
        weights = ops.cast(weights, task_losses.dtype)
        gradients = []
        for i in range(len(variables)):
            if i in stacked:
                gradient = _gradient_step.combine(stacked[i], weights)
            else:
                parts = [g[i] for g in per_task if g[i] is not None]
                gradient = sum(parts[1:], parts[0]) if parts else None
            if extra_grads[i] is not None:
                gradient = extra_grads[i] if gradient is None else gradient + extra_grads[i]
            gradients.append(gradient)
        model.optimizer.apply(gradients, variables)
        total = torch.sum(weights * task_losses) + (extra.detach() if extra is not None else 0.0)
        batch = next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
        _gradient_step.loss_tracker(model).update_state(total, sample_weight=batch)
        model._task_logs.update_state(
            [mean.detach() for mean in means], counts, ops.cast(weights, "float32") * ops.convert_to_tensor(lambdas, "float32")
        )
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
