"""`mk.saving.load_keras_file`: a damaged or foreign `.keras` file gets a message naming the file and the
problem (not "file not found" or a zip/HDF5 trace), and loading touches no file."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.saving import check_keras_file, load_keras_file

from reliability_helpers import tree_listing


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A good tiny .keras model and its predictions."""
    folder = tmp_path_factory.mktemp("saved")
    model = mk.builders.hard_sharing((3,), [mk.Task("a", 1)], trunk_units=(2,))
    x = np.arange(12, dtype="float32").reshape(4, 3)
    path = folder / "good.keras"
    model.save(path)
    return path, x, model.predict(x, verbose=0)["a"]


def _refused(path, exc, *fragments):
    listing = tree_listing(path.parent)
    with pytest.raises(exc) as info:
        load_keras_file(path)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert str(path.name) in message
    assert tree_listing(path.parent) == listing  # nothing written, nothing removed
    return message


def test_a_good_file_loads_with_the_same_predictions(saved):
    path, x, want = saved
    listing = tree_listing(path.parent)
    model = load_keras_file(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0)["a"], want)
    assert isinstance(model, mk.models.MultiTaskModel)
    assert tree_listing(path.parent) == listing


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model file at .*nothing.keras"):
        load_keras_file(tmp_path / "nothing.keras")
    assert tree_listing(tmp_path) == {}


def test_folder(tmp_path, user_folder):
    listing = tree_listing(user_folder)
    with pytest.raises(ValueError, match="is a folder, not a .keras file"):
        load_keras_file(user_folder)
    assert tree_listing(user_folder) == listing


def test_empty_file(tmp_path):
    path = tmp_path / "empty.keras"
    path.write_bytes(b"")
    _refused(path, ValueError, "is empty (0 bytes)", "Save the model again")


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_truncated_file(saved, tmp_path, fraction):
    data = saved[0].read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: int(len(data) * fraction)])
    _refused(path, ValueError, "truncated or corrupt", "zip directory is missing")


def test_text_file_named_keras(tmp_path):
    path = tmp_path / "notes.keras"
    path.write_text("these are not weights\n")
    _refused(path, ValueError, "is not a .keras archive", "zip archive", "model.save")


def test_hdf5_weights_file(saved, tmp_path):
    model = load_keras_file(saved[0])
    weights = tmp_path / "model.weights.h5"
    model.save_weights(weights)
    path = tmp_path / "weights.keras"
    shutil.copy(weights, path)
    _refused(path, ValueError, "is an HDF5 file", "load_weights")


def test_zip_without_config(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    _refused(path, ValueError, "not a Keras model", "no 'config.json'", "readme.txt")


def test_member_with_a_bad_checksum(saved, tmp_path):
    path = tmp_path / "flipped.keras"
    with zipfile.ZipFile(saved[0]) as src, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename), compress_type=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    start = data.index(b"model.weights.h5") + 200  # inside the stored weights member
    data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    path.write_bytes(bytes(data))
    _refused(path, ValueError, "corrupt .keras archive", "model.weights.h5")


def test_garbage_config_is_wrapped_with_the_file_name(saved, tmp_path):
    path = tmp_path / "garbage.keras"
    with zipfile.ZipFile(saved[0]) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, b"{not json" if item.filename == "config.json" else src.read(item.filename))
    _refused(path, ValueError, "Could not load the model in", "garbage.keras")


def test_a_keras_archive_under_another_suffix(saved, tmp_path):
    path = tmp_path / "model.zip"
    shutil.copy(saved[0], path)
    _refused(path, ValueError, "suffix '.zip'", "ending in '.keras'")


def test_check_keras_file_returns_the_path(saved):
    assert check_keras_file(str(saved[0])) == saved[0]


@pytest.mark.parametrize("bad", ["", None, 3])
def test_path_argument_type(bad):
    with pytest.raises(TypeError, match="path of a .keras file"):
        load_keras_file(bad)
