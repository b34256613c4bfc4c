"""Model classes that the builders return where a plain functional model is not enough."""

from mtmm_keras.models.joint_embedding_model import JointEmbeddingModel

__all__ = ["JointEmbeddingModel"]
