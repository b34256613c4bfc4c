"""The builders; each returns a compiled functional `keras.Model` ready to `fit`."""

from mtmm_keras.builders.attention_fusion import attention_fusion
from mtmm_keras.builders.concat_fusion import concat_fusion
from mtmm_keras.builders.cross_stitch import cross_stitch
from mtmm_keras.builders.gated_fusion import gated_fusion
from mtmm_keras.builders.hard_sharing import hard_sharing
from mtmm_keras.builders.joint_embedding import joint_embedding
from mtmm_keras.builders.mmoe import mmoe
from mtmm_keras.builders.ple import cgc, ple
from mtmm_keras.builders.readouts import attention_model, fusion_weights, gate_model, stitch_weights, tower, with_attention_output
from mtmm_keras.builders.soft_sharing import soft_sharing
from mtmm_keras.builders.transformer_fusion import transformer_fusion

__all__ = [
    "attention_fusion", "attention_model", "cgc", "concat_fusion", "cross_stitch", "fusion_weights", "gate_model",
    "gated_fusion", "hard_sharing", "joint_embedding", "mmoe", "ple", "soft_sharing", "stitch_weights", "tower",
    "transformer_fusion", "with_attention_output",
]
