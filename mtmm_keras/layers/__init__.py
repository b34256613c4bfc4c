"""Keras layers of mtmm-keras (keras.ops only, so they run on TensorFlow, JAX and PyTorch): every layer class the
library registers lives here (the encoders, losses and builders assemble them)."""

from mtmm_keras.layers.attention_fusion import AttentionFusion
from mtmm_keras.layers.concat_fusion import ConcatFusion
from mtmm_keras.layers.cross_stitch import CrossStitch
from mtmm_keras.layers.experts import Experts
from mtmm_keras.layers.gated_fusion import GatedFusion
from mtmm_keras.layers.gates import DSelectKGate, MixExperts, SoftmaxGate
from mtmm_keras.layers.l2_normalization import L2Normalization
from mtmm_keras.layers.log_mel import LogMelSpectrogram
from mtmm_keras.layers.modality_mask import ModalityDropout
from mtmm_keras.layers.piecewise_linear import PiecewiseLinearEncoding
from mtmm_keras.layers.stacked_dense import SplitTowers, StackedDense
from mtmm_keras.layers.standardization import Standardization
from mtmm_keras.layers.temperature import LearnedTemperature
from mtmm_keras.layers.token_ids import TokenIdsTo
from mtmm_keras.layers.transformer_fusion import TransformerFusion
from mtmm_keras.layers.transformer_text import (
    ClassToken,
    PaddingMask,
    PositionEmbedding,
    SequencePooling,
    TransformerEncoderBlock,
)
from mtmm_keras.layers.wide_deep_head import WideDeepHead

__all__ = [
    "AttentionFusion", "ClassToken", "ConcatFusion", "CrossStitch", "DSelectKGate", "Experts", "GatedFusion",
    "L2Normalization", "LearnedTemperature", "LogMelSpectrogram", "MixExperts", "ModalityDropout", "PaddingMask", "PiecewiseLinearEncoding",
    "PositionEmbedding",
    "SequencePooling", "SoftmaxGate", "SplitTowers", "StackedDense", "Standardization", "TokenIdsTo",
    "TransformerEncoderBlock", "TransformerFusion", "WideDeepHead",
]
