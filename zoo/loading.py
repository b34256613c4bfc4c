"""`load(name_or_folder)`: a zoo entry or a local preset folder, every file's sha256 checked before loading."""

from __future__ import annotations

import os

import keras

from mtmm_keras.zoo import presets, recipes, registry


def load(name_or_folder: str | os.PathLike, pretrained: bool = True, weights_dir: str | os.PathLike | None = None) -> keras.Model:
    """The entry's compiled model. `pretrained=False` gives the same architecture freshly initialised
    (entries only), built from the recipe without touching the caller's global random seeds."""
    name, folder = registry.resolve(name_or_folder, weights_dir)
    if not pretrained:
        if name is None:
            raise ValueError("`pretrained=False` needs a zoo entry name (its recipe builds the fresh model), not a folder.")
        return recipes.build(registry.recipe(name))
    return presets.load_preset(folder)
