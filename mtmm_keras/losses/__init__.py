"""Losses for multi-modal training: ranking, contrastive (fixed or learned temperature) and cosine-embedding losses.

`get(name)` resolves the names the joint-embedding builder accepts.
"""

from __future__ import annotations

from typing import Any

import keras

from mtmm_keras.losses.clip import CLIPLoss, SigLIPLoss, clip_loss, siglip_loss
from mtmm_keras.losses.contrastive import ContrastiveLoss, contrastive
from mtmm_keras.losses.cosine_embedding import CosineEmbeddingLoss, cosine_embedding, pair_cosine
from mtmm_keras.losses.ranking import MaxMarginRankingLoss, max_margin_ranking
from mtmm_keras.layers.temperature import LearnedTemperature

_BY_NAME = {
    "max_margin": MaxMarginRankingLoss,
    "max_margin_ranking": MaxMarginRankingLoss,
    "hardest_negative": lambda: MaxMarginRankingLoss(hardest_negative=True),
    "contrastive": ContrastiveLoss,
    "infonce": ContrastiveLoss,
    "cosine_embedding": CosineEmbeddingLoss,
    "clip": CLIPLoss,
    "siglip": SigLIPLoss,
}


def get(identifier: Any) -> keras.losses.Loss:
    """A joint-embedding loss from a name in `names()` or a `keras.losses.Loss` instance."""
    if isinstance(identifier, keras.losses.Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"`loss` must be a keras.losses.Loss or one of {names()}; got {identifier!r}.")


def names() -> list[str]:
    """The names `mk.losses.get` accepts, sorted."""
    return sorted(_BY_NAME)


__all__ = [
    "CLIPLoss",
    "ContrastiveLoss",
    "CosineEmbeddingLoss",
    "LearnedTemperature",
    "MaxMarginRankingLoss",
    "SigLIPLoss",
    "clip_loss",
    "contrastive",
    "cosine_embedding",
    "get",
    "max_margin_ranking",
    "names",
    "pair_cosine",
    "siglip_loss",
]
