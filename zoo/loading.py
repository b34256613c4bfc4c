"""`load(name)`: build the entry from its recipe and load its weights after checking their sha256."""

from __future__ import annotations

import warnings
from pathlib import Path

import keras

from mtmm_keras.zoo import integrity, recipes, registry


def load(name: str, pretrained: bool = True, weights_dir: str | Path | None = None) -> keras.Model:
    recipe = registry.recipe(name)
    folder = Path(weights_dir) if weights_dir else registry.entry_dir(name)
    weights = folder / registry.WEIGHTS_FILE
    if pretrained:  # check before building anything: a bad file loads nothing
        meta = registry.metadata(name, folder) or {}
        integrity.verify(weights, (meta.get("sha256") or {}).get(registry.WEIGHTS_FILE), f"zoo entry {name!r}")
    model = recipes.build(recipe)
    if pretrained:
        with warnings.catch_warnings():  # the file holds no optimizer state (on purpose); Keras notes that
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(str(weights))
    return model
