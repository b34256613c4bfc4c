"""Keras layers of mtmm-keras (keras.ops only, so they run on TensorFlow, JAX and PyTorch)."""

from mtmm_keras.layers.attention_fusion import AttentionFusion
from mtmm_keras.layers.cross_stitch import CrossStitch
from mtmm_keras.layers.experts import Experts
from mtmm_keras.layers.gates import DSelectKGate, MixExperts, SoftmaxGate
from mtmm_keras.layers.stacked_dense import SplitTowers, StackedDense
from mtmm_keras.layers.standardization import Standardization

__all__ = [
    "AttentionFusion", "CrossStitch", "DSelectKGate", "Experts", "MixExperts", "SoftmaxGate", "SplitTowers",
    "StackedDense", "Standardization",
]
