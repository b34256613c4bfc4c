"""Keras layers of mtmm-keras (keras.ops only, so they run on TensorFlow, JAX and PyTorch)."""

from mtmm_keras.layers.attention_fusion import AttentionFusion
from mtmm_keras.layers.concat_fusion import ConcatFusion
from mtmm_keras.layers.cross_stitch import CrossStitch
from mtmm_keras.layers.experts import Experts
from mtmm_keras.layers.gated_fusion import GatedFusion
from mtmm_keras.layers.gates import DSelectKGate, MixExperts, SoftmaxGate
from mtmm_keras.layers.modality_mask import ModalityDropout
from mtmm_keras.layers.stacked_dense import SplitTowers, StackedDense
from mtmm_keras.layers.standardization import Standardization
from mtmm_keras.layers.transformer_fusion import TransformerFusion

__all__ = [
    "AttentionFusion", "ConcatFusion", "CrossStitch", "DSelectKGate", "Experts", "GatedFusion", "MixExperts",
    "ModalityDropout", "SoftmaxGate", "SplitTowers", "StackedDense", "Standardization", "TransformerFusion",
]
