"""The offline dataset names, their builder classes (imported on demand) and the default data folder."""

from __future__ import annotations

import importlib
import os
import pathlib
from typing import Any

from mtmm_keras import _extras

_BUILDERS = {
    "multi_fashion": ("mtmm_keras.data.multi_fashion", "MultiFashion"),
    "av_digits": ("mtmm_keras.data.av_digits", "AvDigits"),
    "mfeat": ("mtmm_keras.data.mfeat", "Mfeat"),
    "penguins": ("mtmm_keras.data.penguins", "Penguins"),
    "movies": ("mtmm_keras.data.movies", "Movies"),
}
DATA_DIR_ENV = "MTMM_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/mtmm_keras/datasets"


def names() -> list[str]:
    """Names of the offline datasets that `prepare`/`load` accept."""
    return list(_BUILDERS)


def check_name(name: Any) -> str:
    """Return `name` if it is a dataset name, else raise ValueError listing the valid names."""
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(f"Unknown dataset {name!r}. Valid names: {names()}.")
    return name


def builder_class(name: str) -> type:
    """The TFDS builder class of dataset `name` (importing TensorFlow Datasets on first use)."""
    module, cls = _BUILDERS[check_name(name)]
    _extras.require(["tensorflow_datasets"], "data", f"the {name!r} dataset")
    return getattr(importlib.import_module(module), cls)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """`data_dir`, else $MTMM_DATA_DIR, else ~/.cache/mtmm_keras/datasets, as an absolute path."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return str(pathlib.Path(chosen).expanduser().resolve())
