"""MultiFashion: two Fashion-MNIST items per image (the MultiMNIST construction), tasks `left` and `right`.

Each 36×36 canvas holds one item at (0, 0) (up-left) and another at (8, 8) (down-right); the two are
max-merged and area-resized to 28×28. Train pairs come from the original train split and test pairs
from the original test split; every source item is the `left` item of exactly one pair (full config)
and its partner is drawn at random (never itself), with a fixed seed.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from mtmm_keras.data import sources
from mtmm_keras.data._base import OfflineBuilder, SizedConfig

CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
ITEM, CANVAS, OFFSET = 28, 36, 8
SEED = 20240601
_CHUNK = 2048
_DESCRIPTION = " ".join(__doc__.split())


def area_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of area (box-filter) resampling: output pixel j averages its input span."""
    weights = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for j in range(n_out):
        lo, hi = j * scale, (j + 1) * scale
        for i in range(int(np.floor(lo)), int(np.ceil(hi))):
            weights[j, i] = min(hi, i + 1) - max(lo, i)
    return weights / scale


_RESIZE = area_resize_matrix(CANVAS, ITEM)


def overlay(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Put `left` items at (0,0) and `right` items at (8,8) of a 36×36 canvas, max-merge, resize to 28×28 uint8."""
    n = len(left)
    a = np.zeros((n, CANVAS, CANVAS), np.float32)
    b = np.zeros((n, CANVAS, CANVAS), np.float32)
    a[:, :ITEM, :ITEM] = left
    b[:, OFFSET:OFFSET + ITEM, OFFSET:OFFSET + ITEM] = right
    merged = np.maximum(a, b)
    # two batched matmuls (BLAS), not one three-operand einsum (a naive loop: 90 % of the preparation time);
    # every value is an integer / 81, never within float64 rounding of a .5 tie, so the pixels are the same
    resized = _RESIZE @ merged.astype(np.float64) @ _RESIZE.T
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def make_pairs(num_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (left, right) of `num_items` pairs over `num_items` items: left is a permutation, right != left."""
    rng = np.random.default_rng(seed)
    left = rng.permutation(num_items)
    right = rng.integers(0, num_items - 1, size=num_items)
    right = right + (right >= left)  # skip the left item itself, keeps right uniform over the others
    return left, right


class MultiFashion(OfflineBuilder, skip_registration=True):
    """MultiMNIST-style two-item Fashion-MNIST images with one 10-class task per item."""

    BUILDER_CONFIGS = [
        SizedConfig(name="full", description="60,000 train / 10,000 test pairs.", train_size=60_000, test_size=10_000),
        SizedConfig(name="small", description="A quick 1,000 / 200 slice of the full pairs.", train_size=1_000, test_size=200),
    ]
    DEFAULT_CONFIG_NAME = "full"
    INPUTS = ("image",)
    LABELS = ("left", "right")
    DESCRIPTION = _DESCRIPTION
    SOURCE = "Fashion-MNIST (Zalando Research), Debian package `dataset-fashion-mnist` (original IDX files)."
    LICENSE = "MIT (Fashion-MNIST)"
    HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
    CITATION = (
        "Xiao, Rasul, Vollgraf (2017). Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
        "Algorithms. arXiv:1708.07747. Construction: Sabour et al. (2017); Lin et al. (2019), Pareto MTL."
    )

    @classmethod
    def check_sources(cls) -> None:
        """Raise `SourceNotFoundError`, naming the apt/pip command that provides it, if a raw source is missing."""
        sources.fashion_mnist_files()

    def _features(self) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(ITEM, ITEM, 1)),
            "left": tfds.features.ClassLabel(names=list(CLASSES)),
            "right": tfds.features.ClassLabel(names=list(CLASSES)),
        })

    def _static_metadata(self) -> dict[str, Any]:
        return {"canvas": CANVAS, "offsets": {"left": [0, 0], "right": [OFFSET, OFFSET]}, "seed": SEED}

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        files = sources.fashion_mnist_files()
        config = self.sized_config
        return {
            "train": self._generate_examples(files["train_images"], files["train_labels"], config.train_size, SEED),
            "test": self._generate_examples(files["test_images"], files["test_labels"], config.test_size, SEED + 1),
        }

    def _generate_examples(self, images_path, labels_path, size: int, seed: int) -> Iterator[tuple[int, dict]]:
        images, labels = sources.read_idx(images_path), sources.read_idx(labels_path)
        left, right = make_pairs(len(images), seed)
        left, right = left[:size], right[:size]
        for start in range(0, size, _CHUNK):
            li, ri = left[start:start + _CHUNK], right[start:start + _CHUNK]
            merged = overlay(images[li], images[ri])
            for k in range(len(li)):
                yield start + k, {"image": merged[k, :, :, None], "left": int(labels[li[k]]), "right": int(labels[ri[k]])}
