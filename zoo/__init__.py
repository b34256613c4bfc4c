"""Pretrained model zoo (imports as `mtmm_keras.zoo`): entries loaded by name, each with its recipe,
weights, sha256 and a model card whose metrics the evaluate command measured.

`list()` and `info()` read JSON only (fast, no backend import); `load`, `train` and `evaluate`
import Keras when called.
"""

from __future__ import annotations

from typing import Any

from mtmm_keras.zoo.registry import info, list  # noqa: A004 (mk.zoo.list() is the public name)


def load(name: str, pretrained: bool = True) -> Any:
    """The entry's model, compiled; `pretrained=False` gives the same architecture freshly initialised."""
    from mtmm_keras.zoo.loading import load as _load

    return _load(name, pretrained=pretrained)


def train(name: str, epochs: int | None = None, out_dir: str | None = None, verbose: int = 2) -> dict:
    """Retrain the entry from scratch with its recipe; writes weights, metadata, card and curves to `out_dir`."""
    from mtmm_keras.zoo.training import train as _train

    return _train(name, epochs=epochs, out_dir=out_dir, verbose=verbose)


def evaluate(name: str, weights_dir: str | None = None) -> dict:
    """Measure the entry (or weights retrained into `weights_dir`) on its data's test split."""
    from mtmm_keras.zoo.evaluation import evaluate as _evaluate

    return _evaluate(name, weights_dir=weights_dir)


__all__ = ["evaluate", "info", "list", "load", "train"]
