"""One-off: rewrite the shipped zoo entries (old layout: recipe + weights + metadata with one hash) as presets
(config.json + weights + card + curves + recipe, metadata.json hashing every file). Weights, cards, metrics,
baselines and training records are kept; the weights' old sha256 is checked before anything is read.

Run: .venv/bin/python scripts/migrate_zoo_presets.py [NAME ...]
"""

from __future__ import annotations

import shutil
import sys
import warnings

import numpy as np

import mtmm_keras  # noqa: F401  (registers the classes once Keras is imported)
from mtmm_keras.zoo import integrity, presets, recipes, registry


def migrate(name: str) -> None:
    folder = registry.entry_dir(name)
    meta = registry.metadata(name)
    if (folder / registry.CONFIG_FILE).is_file():
        print(f"{name}: already a preset")
        return
    integrity.verify(folder / registry.WEIGHTS_FILE, meta["sha256"][registry.WEIGHTS_FILE], name)
    recipe = registry.recipe(name)
    model = recipes.build(recipe)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(str(folder / registry.WEIGHTS_FILE))
    keep = {k: v for k, v in meta.items() if k not in ("sha256", "params", "weights_file", "weights_bytes")}
    keep["description"] = recipe.get("description", "")
    target = presets.output_folder(folder, overwrite=True)
    with target.staging() as staging:
        extra = {registry.RECIPE_FILE: lambda p: shutil.copyfile(folder / registry.RECIPE_FILE, p)}
        if (folder / registry.CURVES_FILE).is_file():
            extra[registry.CURVES_FILE] = lambda p: shutil.copyfile(folder / registry.CURVES_FILE, p)
        old_card = (folder / registry.CARD_FILE).read_text()  # kept word for word: the weights' bytes do not change
        written = presets.write_preset(staging, model, keep, old_card, extra)
        if written["sha256"][registry.WEIGHTS_FILE] not in old_card:
            raise RuntimeError(f"{name}: the re-saved weights differ in bytes from the card's sha256; re-render the card.")
        target.commit(staging)
    reloaded = presets.load_preset(folder)
    for old, new in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(old, new)
    print(f"{name}: migrated ({len(registry.metadata(name)['sha256'])} files hashed), weights identical after reload")


if __name__ == "__main__":
    for entry in sys.argv[1:] or registry.list():
        migrate(entry)
