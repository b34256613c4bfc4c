"""Model classes that the builders return where a plain functional model is not enough."""

from mtmm_keras.models.ensemble import average_ensemble
from mtmm_keras.models.graph_metrics import GraphMetricsMixin
from mtmm_keras.models.in_memory_fit import InMemoryFitMixin
from mtmm_keras.models.joint_embedding_model import JointEmbeddingModel
from mtmm_keras.models.multi_task_model import MultiTaskModel

__all__ = ["GraphMetricsMixin", "average_ensemble", "InMemoryFitMixin", "JointEmbeddingModel", "MultiTaskModel"]
