"""Palmer penguins: a tiny multi-task tabular set (333 complete rows of the palmerpenguins CSV).

Input `features`, float32 [7], in this order:
  0-2 island one-hot (Biscoe, Dream, Torgersen), 3 bill length (mm), 4 bill depth (mm),
  5 flipper length (mm), 6 year.
Columns 3-6 are standardised with the train split's mean and standard deviation (stored in the
dataset's metadata as `standardization`); the one-hot columns stay 0/1.
Tasks: `species` (Adelie, Chinstrap, Gentoo), `sex` (female, male), `body_mass` (float32, kg).
Split: 80 / 20 stratified by species with a fixed seed (266 train / 67 test).
"""

from __future__ import annotations

import csv
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from mtmm_keras.data import sources
from mtmm_keras.data._base import OfflineBuilder, SizedConfig

ISLANDS = ("Biscoe", "Dream", "Torgersen")
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
SEXES = ("female", "male")
NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "year")
FEATURE_NAMES = tuple(f"island_{island}" for island in ISLANDS) + NUMERIC
TEST_FRACTION = 0.2
SEED = 42
_DESCRIPTION = " ".join(__doc__.split())


def read_complete_rows(path) -> list[dict[str, str]]:
    """Rows of the palmerpenguins CSV with no missing ("NA") value."""
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if all(value not in ("", "NA") for value in row.values())]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices with round(test_fraction × n) test rows of each class, shuffled."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(test_fraction * len(idx)))
        test.append(idx[:cut])
        train.append(idx[cut:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def encode(rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Raw (unstandardised) feature matrix [n, 7] and the three targets."""
    island = np.array([[row["island"] == name for name in ISLANDS] for row in rows], dtype=np.float64)
    numeric = np.array([[float(row[col]) for col in NUMERIC] for row in rows])
    return {
        "features": np.concatenate([island, numeric], axis=1),
        "species": np.array([SPECIES.index(row["species"]) for row in rows]),
        "sex": np.array([SEXES.index(row["sex"]) for row in rows]),
        "body_mass": np.array([float(row["body_mass_g"]) / 1000.0 for row in rows]),
    }


class Penguins(OfflineBuilder, skip_registration=True):
    """Palmer penguins with three tasks: species, sex and body mass."""

    BUILDER_CONFIGS = [
        SizedConfig(name="full", description="266 train / 67 test (all 333 complete rows).", train_size=266, test_size=67),
        SizedConfig(name="small", description="A quick 120 / 40 slice.", train_size=120, test_size=40),
    ]
    DEFAULT_CONFIG_NAME = "full"
    INPUTS = ("features",)
    LABELS = ("species", "sex", "body_mass")
    DESCRIPTION = _DESCRIPTION
    SOURCE = "palmerpenguins (PyPI package `palmerpenguins`, data/penguins.csv)."
    LICENSE = "CC0 1.0"
    HOMEPAGE = "https://allisonhorst.github.io/palmerpenguins/"
    CITATION = ("Horst AM, Hill AP, Gorman KB (2020). palmerpenguins: Palmer Archipelago (Antarctica) penguin data. "
                "doi:10.5281/zenodo.3960218. Data: Gorman, Williams, Fraser (2014), PLoS ONE 9(3): e90081.")

    @classmethod
    def check_sources(cls) -> None:
        """Raise `SourceNotFoundError`, naming the apt/pip command that provides it, if a raw source is missing."""
        sources.penguins_csv()

    def _features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict({
            "features": tfds.features.Tensor(shape=(len(FEATURE_NAMES),), dtype=np.float32),
            "species": tfds.features.ClassLabel(names=list(SPECIES)),
            "sex": tfds.features.ClassLabel(names=list(SEXES)),
            "body_mass": tfds.features.Scalar(dtype=np.float32, doc="body mass in kg"),
        })

    def _static_metadata(self) -> dict[str, Any]:
        return {"feature_names": list(FEATURE_NAMES), "standardized_columns": list(NUMERIC), "seed": SEED,
                "body_mass_unit": "kg"}

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        data = encode(read_complete_rows(sources.penguins_csv()))
        train, test = stratified_split(data["species"], TEST_FRACTION, SEED)
        numeric = slice(len(ISLANDS), len(FEATURE_NAMES))
        mean, std = data["features"][train, numeric].mean(axis=0), data["features"][train, numeric].std(axis=0)
        self.info.metadata["standardization"] = {"columns": list(NUMERIC), "mean": mean.tolist(), "std": std.tolist()}
        data["features"][:, numeric] = (data["features"][:, numeric] - mean) / std
        config = self.sized_config
        return {
            "train": self._generate_examples(data, train[:config.train_size]),
            "test": self._generate_examples(data, test[:config.test_size]),
        }

    def _generate_examples(self, data: dict[str, np.ndarray], rows: np.ndarray) -> Iterator[tuple[int, dict]]:
        for row in rows:
            yield int(row), {
                "features": data["features"][row].astype(np.float32),
                "species": int(data["species"][row]),
                "sex": int(data["sex"][row]),
                "body_mass": np.float32(data["body_mass"][row]),
            }
