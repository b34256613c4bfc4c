"""`load(name_or_folder)`: a zoo entry or a local preset folder, every file's sha256 checked before loading."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from mtmm_keras.zoo import presets, recipes, registry


def resolve(name_or_folder: str | os.PathLike, weights_dir: str | os.PathLike | None = None) -> tuple[str | None, Path]:
    """(entry name or None, preset folder) for a zoo entry name or a path to a preset folder."""
    if not isinstance(name_or_folder, (str, os.PathLike)):
        raise TypeError(f"zoo entry must be a name or a preset folder path, got {type(name_or_folder).__name__}.")
    text = os.fspath(name_or_folder)
    if text in registry.list():
        return text, Path(weights_dir) if weights_dir else registry.entry_dir(text)
    looks_like_path = os.sep in text or text.startswith(".") or os.path.isdir(text)
    if looks_like_path:
        if weights_dir:
            raise ValueError("`weights_dir` goes with an entry name; a preset folder already holds its weights.")
        if not os.path.isdir(text):
            raise FileNotFoundError(f"preset folder {text!r} does not exist.")
        return None, Path(text)
    registry.entry_dir(text)  # raises: unknown entry, with the valid names
    raise AssertionError("unreachable")


def load(name_or_folder: str | os.PathLike, pretrained: bool = True, weights_dir: str | os.PathLike | None = None) -> keras.Model:
    """The entry's compiled model. `pretrained=False` gives the same architecture freshly initialised
    (entries only), built from the recipe without touching the caller's global random seeds."""
    name, folder = resolve(name_or_folder, weights_dir)
    if not pretrained:
        if name is None:
            raise ValueError("`pretrained=False` needs a zoo entry name (its recipe builds the fresh model), not a folder.")
        return recipes.build(registry.recipe(name))
    return presets.load_preset(folder)
