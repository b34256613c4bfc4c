"""Pretrained model zoo (imports as `mtmm_keras.zoo`): entries loaded by name, each with its recipe,
weights, sha256 and a model card whose metrics the evaluate command measured.

`list()` and `info()` read JSON only (fast, no backend import); `load`, `train` and `evaluate`
import Keras when called.
"""

from __future__ import annotations

import os
from typing import Any

from mtmm_keras.zoo.registry import info, list  # noqa: A004 (mk.zoo.list() is the public name)


def load(name_or_folder: str | os.PathLike, pretrained: bool = True) -> Any:
    """A zoo entry by name, or a preset folder saved with `save_preset`, compiled and ready to use.

    Every file's sha256 is checked before anything is built; the model is deserialized in safe mode.
    `pretrained=False` (entries only) gives the same architecture freshly initialised."""
    from mtmm_keras.zoo.loading import load as _load

    return _load(name_or_folder, pretrained=pretrained)


def save_preset(model: Any, folder: str | os.PathLike, card: str | None = None, metrics: dict | None = None,
                name: str | None = None, description: str = "", overwrite: bool = False) -> dict:
    """Publish `model` as a preset folder (config.json, weights, card, metadata.json with every file's sha256)."""
    from mtmm_keras.zoo.presets import save_preset as _save_preset

    return _save_preset(model, folder, card=card, metrics=metrics, name=name, description=description, overwrite=overwrite)


def verify(name_or_folder: str | os.PathLike) -> dict:
    """Re-check the sha256 of every file of an entry or preset folder; raises ValueError naming each bad file."""
    from mtmm_keras.zoo import presets, registry

    return presets.verify(registry.resolve(name_or_folder)[1])


def train(name: str, epochs: int | None = None, out_dir: str | None = None, verbose: int = 2, overwrite: bool = False,
          distribute: str | None = None) -> dict:
    """Retrain the entry from scratch with its recipe and write it as a preset folder to `out_dir`
    (default runs/zoo/NAME; an earlier entry there is replaced only with `overwrite=True`);
    `distribute` = "mirrored" | "multi_worker" | "jax" trains data-parallel (`mk.distribute.training_scope`)."""
    from mtmm_keras.zoo.training import train as _train

    return _train(name, epochs=epochs, out_dir=out_dir, verbose=verbose, overwrite=overwrite, distribute=distribute)


def evaluate(name: str, weights_dir: str | None = None) -> dict:
    """Measure the entry (or weights retrained into `weights_dir`) on its data's test split."""
    from mtmm_keras.zoo.evaluation import evaluate as _evaluate

    return _evaluate(name, weights_dir=weights_dir)


__all__ = ["evaluate", "info", "list", "load", "save_preset", "train", "verify"]
