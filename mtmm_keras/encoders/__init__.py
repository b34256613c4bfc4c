"""Per-modality encoders: functional `keras.Model`s that map one input to one feature vector."""

from mtmm_keras.encoders.audio import audio
from mtmm_keras.encoders.backbone import from_backbone
from mtmm_keras.encoders.image import image
from mtmm_keras.encoders.tabular import tabular
from mtmm_keras.encoders.text import text
from mtmm_keras.encoders.transformer import transformer_text

__all__ = ["audio", "from_backbone", "image", "tabular", "text", "transformer_text"]
