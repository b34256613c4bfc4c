"""The builders; each returns a compiled functional `keras.Model` ready to `fit`."""

from mtmm_keras.builders.attention_fusion import attention_fusion, attention_model, with_attention_output
from mtmm_keras.builders.cross_stitch import cross_stitch
from mtmm_keras.builders.gates import gate_model, stitch_weights
from mtmm_keras.builders.hard_sharing import hard_sharing
from mtmm_keras.builders.joint_embedding import joint_embedding, tower
from mtmm_keras.builders.mmoe import mmoe
from mtmm_keras.builders.ple import cgc, ple
from mtmm_keras.builders.soft_sharing import soft_sharing

__all__ = [
    "attention_fusion", "attention_model", "cgc", "cross_stitch", "gate_model", "hard_sharing", "joint_embedding",
    "mmoe", "ple", "soft_sharing", "stitch_weights", "tower", "with_attention_output",
]
