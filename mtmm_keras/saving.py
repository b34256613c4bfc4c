"""Loading `.keras` files with errors that say which file is wrong and how.

`keras.models.load_model` on a truncated or foreign file reports a low-level zip/HDF5 error or a
misleading "file not found"; `load_keras_file` checks the file first (exists, is a non-empty zip
archive that reads back whole and holds Keras's `config.json`) and wraps whatever Keras raises in a
ValueError naming the file.
"""

from __future__ import annotations

import os
import pathlib
import zipfile
from typing import Any

# Keras's `.keras` archive: config.json (architecture), metadata.json, model.weights.h5.
_CONFIG_MEMBER = "config.json"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def check_keras_file(path: str | os.PathLike) -> pathlib.Path:
    """Return `path` as a Path if it looks like a whole `.keras` archive, else raise naming the problem.

    FileNotFoundError: nothing at `path`. ValueError: a folder, an empty file, not a zip archive (an
    HDF5 file is recognised and named), a truncated or corrupt archive, or an archive without
    `config.json`.
    """
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise TypeError(f"`path` must be the path of a .keras file, got {path!r}.")
    file = pathlib.Path(path)
    if not file.exists():
        raise FileNotFoundError(f"No model file at {str(file)!r} (checked {str(file.resolve())!r}).")
    if file.is_dir():
        raise ValueError(
            f"{str(file)!r} is a folder, not a .keras file. A SavedModel folder loads with "
            "`keras.layers.TFSMLayer`; pass the path of the .keras file written by `model.save(...)`."
        )
    size = file.stat().st_size
    if size == 0:
        raise ValueError(f"{str(file)!r} is empty (0 bytes): the save was interrupted or the copy failed. Save the model again.")
    with open(file, "rb") as handle:
        head = handle.read(8)
    if head == _HDF5_MAGIC:
        raise ValueError(
            f"{str(file)!r} is an HDF5 file, not a .keras archive: a weights file (`model.weights.h5`) loads with "
            "`model.load_weights(path)` into a model built with the same architecture; a legacy .h5 model with "
            "`keras.models.load_model` and a .h5 name."
        )
    if not zipfile.is_zipfile(file):
        if head[:2] == b"PK":
            raise ValueError(
                f"{str(file)!r} ({size} bytes) is a truncated or corrupt .keras archive (its zip directory is missing). "
                "Copy or save the model again."
            )
        raise ValueError(
            f"{str(file)!r} ({size} bytes) is not a .keras archive (a .keras file is a zip archive written by "
            "`model.save('name.keras')`)."
        )
    try:
        with zipfile.ZipFile(file) as archive:
            bad_member = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as err:
        raise ValueError(f"{str(file)!r} is a corrupt .keras archive ({err}). Copy or save the model again.") from None
    if bad_member is not None:
        raise ValueError(
            f"{str(file)!r} is a corrupt .keras archive: member {bad_member!r} fails its checksum. Copy or save the model again."
        )
    if _CONFIG_MEMBER not in names:
        raise ValueError(
            f"{str(file)!r} is a zip archive but not a Keras model: it has no {_CONFIG_MEMBER!r} "
            f"(members: {sorted(names)[:10]}). Pass a file written by `model.save('name.keras')`."
        )
    return file


def load_keras_file(path: str | os.PathLike, *, compile: bool = True, safe_mode: bool = True,
                    custom_objects: dict[str, Any] | None = None) -> Any:
    """`keras.models.load_model(path)` after `check_keras_file(path)`, with this package's classes registered.

    Raises FileNotFoundError when nothing is at `path`, ValueError naming the file and what is wrong with
    it otherwise (including any error Keras raises while reading it).
    """
    import keras

    import mtmm_keras

    file = check_keras_file(path)
    mtmm_keras._register_all()
    if file.suffix != ".keras":
        raise ValueError(
            f"{str(file)!r} is a .keras archive with the suffix {file.suffix!r}; Keras only reads it under a name "
            "ending in '.keras': rename or copy it."
        )
    try:
        return keras.models.load_model(file, compile=compile, safe_mode=safe_mode, custom_objects=custom_objects)
    except Exception as err:  # noqa: BLE001 - every failure is reported as the file's problem
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if len(message) > 300:
            message = message[:300] + "..."
        raise ValueError(
            f"Could not load the model in {str(file)!r}: {type(err).__name__}: {message}. If it was saved by another "
            "version of Keras or mtmm_keras, or with custom objects, load it where it was saved; if it is corrupt, "
            "save it again."
        ) from err


__all__ = ["check_keras_file", "load_keras_file"]
