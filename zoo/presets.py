"""Preset folders (the keras-hub layout): write, verify and load a model with a sha256 for every file.

A preset folder holds `config.json` (the Keras-serialized model, compile settings included, so it loads
even if a builder's layer names change later), `model.weights.h5` (weights only, no optimizer state),
`card.md`, optionally `curves.png` and `recipe.json`, and `metadata.json` with the sha256 of every other
file. Loading checks every hash before anything is built, and deserializes in Keras safe mode.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from mtmm_keras import _output_folder
from mtmm_keras.zoo import integrity, registry

KIND = "zoo entry"
FORMAT_VERSION = 1
# metadata.json of an entry written before presets recorded `written_by` (training's old layout)
LEGACY_METADATA_KEYS = ("name", "metrics", "sha256", "weights_file")


def output_folder(folder: str | os.PathLike, overwrite: bool = False, argument: str = "folder") -> _output_folder.OutputFolder:
    """The checked target of a preset write: new, empty, or (with `overwrite`) an earlier preset that holds
    only the files its metadata lists."""
    return _output_folder.OutputFolder(folder, kind=KIND, owner_file=registry.METADATA_FILE, overwrite=overwrite,
                                       argument=argument, legacy_keys=LEGACY_METADATA_KEYS, listed=_metadata_lists)


def _metadata_lists(metadata: dict, folder: Path) -> set[str]:
    hashed = metadata.get("sha256") if isinstance(metadata.get("sha256"), dict) else {}
    names = _output_folder.top_level_names(hashed, folder)
    if "written_by" not in metadata:  # the layout training wrote before presets: one hash, known companions
        names |= {registry.RECIPE_FILE, registry.CARD_FILE, registry.CURVES_FILE, registry.WEIGHTS_FILE}
    return names


def check_finite_weights(model: Any, what: str) -> None:
    """Refuse to save a model with NaN/inf weights (e.g. after one NaN label): name the first bad variable."""
    import numpy as np

    for variable in model.weights:
        value = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ValueError(f"{what}: weight {variable.path!r} holds NaN or infinite values (often a NaN/inf in the "
                             "training data or too high a learning rate); refusing to save it. Nothing was written.")


def check_finite_metrics(metrics: dict[str, Any], what: str) -> None:
    """Raise `ValueError` if any metric is NaN or infinite, before an entry is written."""
    for key, value in _flatten(metrics):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{what}: metric {key!r} is {value}; refusing to save an entry with non-finite "
                             "metrics. Nothing was written.")


def _flatten(data: Any, prefix: str = ""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}{key}/" if isinstance(value, dict) else f"{prefix}{key}")
    else:
        yield prefix, data


def write_preset(folder: Path, model: Any, metadata: dict[str, Any], card: str | Callable[[dict], str],
                 extra_files: dict[str, Callable[[Path], None]] | None = None) -> dict[str, Any]:
    """Write config, weights, card, extra files and metadata (with every file's sha256) into `folder`.

    `card` may be a function of the metadata (it then sees the weights' size and sha256)."""
    import keras

    name = metadata.get("name", model.name)
    check_finite_weights(model, f"preset {name!r}")
    check_finite_metrics(metadata, f"preset {name!r}")
    config = keras.saving.serialize_keras_object(model)
    _output_folder.write_json(folder / registry.CONFIG_FILE, config)
    bare_config = {k: v for k, v in config.items() if k != "compile_config"}
    try:  # same graph, no optimizer (weights only in the file); also proves the preset reloads in safe mode
        bare = keras.saving.deserialize_keras_object(bare_config, safe_mode=True)
    except ValueError as err:
        raise ValueError(f"preset {name!r}: the model cannot be rebuilt in Keras safe mode, which is how presets load "
                         f"({str(err).splitlines()[0][:200]}); replace Lambda layers with registered layers. "
                         "Nothing was written.") from None
    bare.set_weights(model.get_weights())
    bare.save_weights(str(folder / registry.WEIGHTS_FILE))
    meta = {
        "written_by": _output_folder.marker(KIND),
        "format_version": FORMAT_VERSION,
        **metadata,
        "params": int(model.count_params()),
        "weights_file": registry.WEIGHTS_FILE,
        "weights_bytes": (folder / registry.WEIGHTS_FILE).stat().st_size,
        "keras_version": keras.__version__,
        "sha256": {registry.WEIGHTS_FILE: integrity.sha256(folder / registry.WEIGHTS_FILE)},
    }
    (folder / registry.CARD_FILE).write_text(card(meta) if callable(card) else card)
    for filename, writer in (extra_files or {}).items():
        writer(folder / filename)
    files = sorted(p.name for p in folder.iterdir() if p.name != registry.METADATA_FILE)
    meta["sha256"] = {f: integrity.sha256(folder / f) for f in files}
    _output_folder.write_json(folder / registry.METADATA_FILE, meta)
    return meta


def save_preset(model: Any, folder: str | os.PathLike, card: str | None = None, metrics: dict[str, float] | None = None,
                name: str | None = None, description: str = "", overwrite: bool = False) -> dict[str, Any]:
    """Publish `model` as a preset folder that `mk.zoo.load(folder)` loads and `mtmm zoo verify` checks.

    Args:
        card: the model card (markdown); a short one listing `metrics` is written when None.
        metrics: measured numbers to record (finite floats); put how they were measured in the card.
        overwrite: replace an earlier preset at `folder` (a folder with anything else is never replaced).
    Returns the metadata written. Non-finite weights or metrics are refused before anything is written.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    metrics = dict(metrics or {})
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"`metrics[{key!r}]` must be a number, got {type(value).__name__}.")
        metrics[key] = float(value)
    name = name or model.name
    check_finite_weights(model, f"preset {name!r}")
    check_finite_metrics(metrics, f"preset {name!r}")
    target = output_folder(folder, overwrite)
    if card is None:
        rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
        card = f"# {name}\n\n{description}\n\n" + (f"| metric | value |\n|---|---|\n{rows}\n" if metrics else "")
    with target.staging() as staging:
        meta = write_preset(staging, model, {"name": name, "description": description, "metrics": metrics}, card)
        target.commit(staging)
    return meta


def update_preset(folder: str | os.PathLike, changes: dict[str, Any], card: Callable[[dict], str]) -> dict[str, Any]:
    """Add or replace metadata keys of an existing preset and re-render its card, without touching the model.

    The folder is verified first (every sha256); its other files are copied unchanged into a staging folder
    beside it, the card is rendered from the updated metadata, every sha256 is recomputed, and the folder
    is swapped in with one rename (`_output_folder`), so a crash leaves the old preset or the new one, whole.
    `changes` may not replace the keys that describe the files (`sha256`, `weights_file`, ...)."""
    import shutil

    folder = Path(folder)
    verify(folder)
    protected = {"sha256", "weights_file", "weights_bytes", "params", "written_by", "format_version", "keras_version"}
    if protected & set(changes):
        raise ValueError(f"`changes` may not replace {sorted(protected & set(changes))}: those describe the files.")
    check_finite_metrics(changes, f"preset {folder.name!r}")
    meta = registry.read_json(folder / registry.METADATA_FILE)
    target = output_folder(folder, overwrite=True)
    with target.staging() as staging:
        for filename in meta["sha256"]:
            if filename != registry.CARD_FILE:
                shutil.copy2(folder / filename, staging / filename)
        updated = {**meta, **changes}
        (staging / registry.CARD_FILE).write_text(card(updated))
        updated["sha256"] = {f: integrity.sha256(staging / f) for f in sorted(p.name for p in staging.iterdir())}
        _output_folder.write_json(staging / registry.METADATA_FILE, updated)
        target.commit(staging)
    verify(folder)
    return updated


def verify(folder: str | os.PathLike) -> dict[str, str]:
    """Check every file of a preset against metadata.json; returns {file: "ok"}; raises ValueError naming
    each missing, modified or unlisted file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"preset folder {str(folder)!r} does not exist.")
    meta = registry.read_json(folder / registry.METADATA_FILE) if (folder / registry.METADATA_FILE).is_file() else None
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), dict) or not meta["sha256"]:
        raise ValueError(f"{folder}: no {registry.METADATA_FILE} with a sha256 per file; refusing to load unverified files.")
    problems, status = [], {}
    for filename, expected in sorted(meta["sha256"].items()):
        path = folder / filename
        if Path(filename).name != filename or filename == registry.METADATA_FILE:
            problems.append(f"{filename}: not a plain file name")
        elif not path.is_file():
            problems.append(f"{filename}: missing")
        elif integrity.sha256(path) != expected:
            problems.append(f"{filename}: sha256 mismatch (modified or corrupt)")
        else:
            status[filename] = "ok"
    unlisted = sorted(p.name for p in folder.iterdir() if p.name not in meta["sha256"] and p.name != registry.METADATA_FILE)
    problems += [f"{f}: not listed in {registry.METADATA_FILE}" for f in unlisted]
    if problems:
        raise ValueError(f"preset {str(folder)!r} failed verification; nothing was loaded: " + "; ".join(problems)
                         + ". Reinstall the package, retrain with `mtmm zoo train`, or re-save the preset.")
    return status


def _unknown_classes(config: Any) -> list[str]:
    """The classes a Keras config names that this process cannot resolve: registered names (`package>Class`)
    missing from Keras's registry, and Keras classes its module does not have. Sorted, without repeats."""
    import importlib

    import keras

    unknown: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            name, module, registered = node.get("class_name"), node.get("module"), node.get("registered_name")
            if isinstance(name, str):
                if isinstance(registered, str) and ">" in registered:
                    if keras.saving.get_registered_object(registered) is None:
                        unknown.add(registered)
                elif isinstance(module, str) and module.startswith("keras"):
                    try:
                        found = hasattr(importlib.import_module(module), name)
                    except ImportError:
                        found = False
                    if not found:
                        unknown.add(f"{module}.{name}")
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    return sorted(unknown)


def load_preset(folder: str | os.PathLike, compile: bool = True) -> Any:
    """Verify every hash, then build the model from config.json (safe mode) and load its weights."""
    import warnings

    import keras

    import mtmm_keras

    folder = Path(folder)
    verify(folder)
    mtmm_keras._register_all()
    with open(folder / registry.CONFIG_FILE) as f:
        config = json.load(f)
    if not compile:
        config = {k: v for k, v in config.items() if k != "compile_config"}
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (TypeError, ValueError) as err:
        unknown = _unknown_classes(config)
        reason = (f"it names classes nobody registered: {', '.join(unknown)} (a class from another package: import "
                  "that package first; else the file was edited)") if unknown else str(err).splitlines()[0]
        raise ValueError(f"{folder / registry.CONFIG_FILE}: cannot rebuild the model: {reason}") from None
    weights = folder / registry.WEIGHTS_FILE
    with warnings.catch_warnings():  # the weights file holds no optimizer state (on purpose); Keras notes that
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        try:
            model.load_weights(str(weights))
        except (OSError, ValueError, KeyError) as err:  # h5py: truncated/corrupt file; Keras: weights that do not fit
            raise ValueError(
                f"{weights}: the weights cannot be loaded ({type(err).__name__}: {str(err).splitlines()[0]}). The file "
                "is truncated or corrupt, or belongs to another architecture than config.json describes; reinstall "
                "the package, retrain with `mtmm zoo train`, or save the preset again."
            ) from None
    return model
