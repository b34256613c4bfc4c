"""Keras layers of mtmm-keras (keras.ops only, so they run on TensorFlow, JAX and PyTorch)."""

from mtmm_keras.layers.attention_fusion import AttentionFusion
from mtmm_keras.layers.stacked_dense import SplitTowers, StackedDense
from mtmm_keras.layers.standardization import Standardization

__all__ = ["AttentionFusion", "SplitTowers", "StackedDense", "Standardization"]
