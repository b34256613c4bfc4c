"""A damaged preset is reported by the file and the reason, never by a raw h5py/Keras error: truncated weights
(with a matching checksum, as after a copy that regenerated metadata) and classes nobody registered."""

from __future__ import annotations

import json

import pytest

import mtmm_keras as mk
from mtmm_keras._hashing import sha256


def _preset(tmp_path, name="p"):
    model = mk.builders.mmoe((4,), [mk.Task("a", 1)], num_experts=2, expert_units=(4,), tower_units=(2,))
    folder = tmp_path / name
    mk.zoo.save_preset(model, folder, card="# test\n")
    return folder


def _rehash(folder, file):
    meta = json.loads((folder / "metadata.json").read_text())
    meta["sha256"][file] = sha256(folder / file)
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_truncated_weights_name_the_file(tmp_path):
    folder = _preset(tmp_path)
    weights = folder / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _rehash(folder, "model.weights.h5")
    with pytest.raises(ValueError, match=rf"^{weights}: the weights cannot be loaded \(OSError: .*truncated.*\)\. "
                                         r"The file is truncated or corrupt"):
        mk.zoo.load(folder)


@pytest.mark.parametrize("old, new, named", [
    ('"mtmm>Experts"', '"mtmm>Expertz"', "mtmm>Expertz"),
    ('"class_name": "Dense"', '"class_name": "NoSuchLayer"', "keras.layers.NoSuchLayer"),
])
def test_unknown_classes_are_named(tmp_path, old, new, named):
    folder = _preset(tmp_path)
    config = (folder / "config.json").read_text()
    assert old in config
    (folder / "config.json").write_text(config.replace(old, new, 1))
    _rehash(folder, "config.json")
    with pytest.raises(ValueError, match=rf"config\.json: cannot rebuild the model: it names classes nobody "
                                         rf"registered: {named} \(a class from another package"):
        mk.zoo.load(folder)
