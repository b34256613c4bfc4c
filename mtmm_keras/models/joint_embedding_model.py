"""JointEmbeddingModel: a functional model whose loss compares the modalities' embeddings with each other."""

from __future__ import annotations

import itertools
from typing import Any

import keras
from keras import ops

from mtmm_keras.distribute import gather, scaling
from mtmm_keras.distribute.multiworker import MultiWorkerFitMixin
from mtmm_keras.models import _compiled_loss
from mtmm_keras.models._keras_format import KerasFormatSaveMixin
from mtmm_keras.models.graph_metrics import GraphMetricsMixin
from mtmm_keras.models.in_memory_fit import InMemoryFitMixin
from mtmm_keras.models._retrieval_metrics import RetrievalMetricsMixin

# Reductions whose result Keras's `Loss.__call__` already divides by the replica count under
# `tf.distribute` (keras/src/losses/loss.py `reduce_values` -> `scale_loss_for_distribution`); the
# others ("sum", "none") are summed over replicas as they are, so we divide them ourselves.
_KERAS_SCALED_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


@keras.saving.register_keras_serializable(package="mtmm")
class JointEmbeddingModel(KerasFormatSaveMixin, RetrievalMetricsMixin, MultiWorkerFitMixin, InMemoryFitMixin,
                          GraphMetricsMixin, keras.Model):
    """Functional model with one embedding output per modality, trained with a cross-modal loss.

    `compile(loss=...)` takes one loss for the whole model:
    - a similarity-matrix loss (`MaxMarginRankingLoss`, `ContrastiveLoss`): for every pair of
      modalities (m, n) the batch similarity matrix S = E_m E_nᵀ is formed, its diagonal holds the
      matching pairs and every other item is an in-batch negative. `y` may give group ids so that
      items of the same group are not counted as negatives; `fit(x)` with no `y` uses one group per row.
    - a pairwise loss (`CosineEmbeddingLoss`, two modalities): row i is a pair with label `y[i]` ∈ {1, −1}.
    - a learned-temperature loss (`CLIPLoss`, `SigLIPLoss`): as a similarity-matrix loss, with the current
      values of the model's `temperature` layer (`mk.losses.LearnedTemperature`: trainable weights
      `logit_scale` and, for SigLIP, `logit_bias`) passed along. That layer is no part of the inference
      graph (predictions and exports are the embeddings alone) but is trained, saved and reloaded with
      the model; `joint_embedding(loss="clip" | "siglip")` attaches it (`model.temperature`).

    Across replicas (`tf.distribute`) the loss is the one-device loss of the global batch: each
    replica gathers every replica's embeddings, group ids and sample weights
    (`mk.distribute.all_gather_rows`, gradients flowing back to the rows' own replica), so every
    anchor meets the global batch's negatives; each replica's loss is its share of that global loss
    (the trainer sums replicas' gradients), and the regularization losses are shared the same way.
    On one device, and on JAX's DataParallel (one step over the global batch), nothing changes.
    Under MultiWorkerMirroredStrategy `fit` works around keras-team/keras#20585
    (`mk.distribute.multiworker`).
    """

    _is_joint_embedding = True  # `y` holds group ids or pair labels, not one array per output

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A LearnedTemperature layer for CLIPLoss / SigLIPLoss (set by the builder), else None. An instance
        # attribute, not a class default: on PyTorch a layer assigned later lives in torch.nn.Module's
        # `_modules`, which attribute lookup consults only after the class, so a class default would hide it.
        self.temperature = None

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as a dict, so that a `.keras` file can re-create this object."""
        config = super().get_config()
        if self.temperature is not None:
            config["temperature"] = keras.saving.serialize_keras_object(self.temperature)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> "JointEmbeddingModel":
        """Re-create the object from the dict `get_config()` returned (what `keras.models.load_model` calls)."""
        config = dict(config)
        temperature = config.pop("temperature", None)
        model = super().from_config(config, custom_objects=custom_objects)
        if temperature is not None:  # attached like the builder does: its weights load after this
            model.temperature = keras.saving.deserialize_keras_object(temperature, custom_objects=custom_objects)
        return model

    def _loss_inputs(self, loss_fn: Any) -> Any:
        """similarity -> the loss's y_pred: the matrix, or for a learned temperature the dict with its values."""
        if not getattr(loss_fn, "learned_temperature", False):
            return lambda similarity: similarity
        if self.temperature is None:
            raise ValueError(
                f"{type(loss_fn).__name__} learns its temperature as model weights, and this model has none: build "
                f"it with mk.builders.joint_embedding(..., loss={type(loss_fn).__name__}(...)) (or loss='clip' / "
                "'siglip'), or set `model.temperature = loss.make_temperature()` before compiling."
            )
        extra = {"logit_scale": self.temperature.scale()}
        bias = self.temperature.bias()
        if bias is not None:
            extra["logit_bias"] = bias
        return lambda similarity: {"similarity": similarity, **extra}

    def _modality_order(self, y_pred: dict) -> list[str]:
        """The embeddings' keys in the order the model's outputs were given (the builder's `encoders`
        order), which decides the anchor side of a one-directional loss. Not `y_pred`'s own order: a
        dict output comes back in that order on TensorFlow and JAX, but sorted by key on PyTorch (Keras 3.15)."""
        output = getattr(self, "output", None)
        names = [name for name in output if name in y_pred] if isinstance(output, dict) else []
        return names + [name for name in y_pred if name not in names]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The joint-embedding loss over the batch's embeddings (gathered from every replica under a strategy)."""
        loss_fn = self.loss
        if loss_fn is None:
            raise ValueError("JointEmbeddingModel needs `compile(loss=...)`, e.g. mk.losses.MaxMarginRankingLoss().")
        _compiled_loss.mark_unused(self)  # Keras's compiled loss is never called: no re-trace per fit
        embeddings = [y_pred[name] for name in self._modality_order(y_pred)] if isinstance(y_pred, dict) else list(y_pred)
        replicas = scaling.num_replicas()
        if replicas > 1:  # the global batch on every replica: in-batch negatives span all replicas
            embeddings = [gather.all_gather_rows(e) for e in embeddings]
            y = None if y is None else gather.all_gather_rows(ops.stop_gradient(y))
            sample_weight = None if sample_weight is None else gather.all_gather_rows(ops.stop_gradient(sample_weight))
        if getattr(loss_fn, "pairwise", False):
            if len(embeddings) != 2:
                raise ValueError(f"A pairwise loss needs exactly 2 modalities, the model has {len(embeddings)}.")
            if y is None:
                raise ValueError("A pairwise loss needs labels: call fit(x, labels) with labels in {1, -1}.")
            total = loss_fn(y, ops.stack(embeddings, axis=1), sample_weight)
        else:
            group_ids = y if y is not None else ops.arange(ops.shape(embeddings[0])[0])
            loss_inputs = self._loss_inputs(loss_fn)
            total = 0.0
            for a, b in itertools.combinations(embeddings, 2):
                total = total + loss_fn(group_ids, loss_inputs(ops.matmul(a, ops.transpose(b))), sample_weight)
        if replicas > 1 and getattr(loss_fn, "reduction", None) not in _KERAS_SCALED_REDUCTIONS:
            # every replica computed the whole global loss: its share is 1/replicas of it
            total = scaling.scale_for_replicas(total)
        for extra in self.losses:  # computed in full on every replica (mirrored weights): share it too
            total = total + scaling.scale_for_replicas(ops.cast(extra, "float32"))
        return total
