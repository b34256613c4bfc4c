"""The four builders; each returns a compiled functional `keras.Model` ready to `fit`."""

from mtmm_keras.builders.attention_fusion import attention_fusion, attention_model, with_attention_output
from mtmm_keras.builders.hard_sharing import hard_sharing
from mtmm_keras.builders.joint_embedding import joint_embedding, tower
from mtmm_keras.builders.soft_sharing import soft_sharing

__all__ = ["attention_fusion", "attention_model", "hard_sharing", "joint_embedding", "soft_sharing", "tower", "with_attention_output"]
