"""Per-modality encoders: functional `keras.Model`s that map one input to one feature vector."""

from mtmm_keras.encoders.audio import audio
from mtmm_keras.encoders.image import image
from mtmm_keras.encoders.tabular import tabular
from mtmm_keras.encoders.text import text

__all__ = ["audio", "image", "tabular", "text"]
