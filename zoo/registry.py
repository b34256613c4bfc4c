"""Where zoo entries live and what their recipe and metadata say (JSON only: no backend import)."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path
from typing import Any

ENTRIES_DIR = Path(__file__).resolve().parent / "entries"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
RECIPE_FILE = "recipe.json"
METADATA_FILE = "metadata.json"
CARD_FILE = "card.md"
CURVES_FILE = "curves.png"


def list() -> builtins.list[str]:  # noqa: A001 (public name mk.zoo.list)
    """Names of the shipped entries, sorted."""
    if not ENTRIES_DIR.is_dir():
        return []
    return sorted(d.name for d in ENTRIES_DIR.iterdir() if (d / RECIPE_FILE).is_file())


def entry_dir(name: str) -> Path:
    """The folder of the shipped zoo entry `name`; `ValueError` naming the available entries otherwise."""
    if not isinstance(name, str) or name not in list():
        raise ValueError(f"Unknown zoo entry {name!r}; available entries: {', '.join(list()) or '(none)'}.")
    return ENTRIES_DIR / name


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON file of an entry; `ValueError` naming the file when it is corrupt."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the entry is corrupt.") from None


def recipe(name: str) -> dict[str, Any]:
    """The shipped entry's `recipe.json` (builder, encoders, tasks, data, fit settings)."""
    return read_json(entry_dir(name) / RECIPE_FILE)


def metadata(name: str, folder: Path | str | None = None) -> dict[str, Any] | None:
    """The entry's `metadata.json` (checksums, metrics, training), or None when the folder has none."""
    path = Path(folder or entry_dir(name)) / METADATA_FILE
    return read_json(path) if path.is_file() else None


def info(name: str) -> dict[str, Any]:
    """The entry's card as a dict: builder, data, tasks, test metrics, size, sha256, training time and hardware."""
    folder = entry_dir(name)
    rec = recipe(name)
    meta = metadata(name) or {}
    weights = folder / WEIGHTS_FILE
    return {
        "name": name,
        "description": rec.get("description", ""),
        "builder": rec["builder"],
        "data": rec["data"],
        "inputs": builtins.list(rec.get("encoders", {})),
        "tasks": [t["name"] for t in rec.get("tasks", [])],
        "metrics": meta.get("metrics", {}),
        "baselines": meta.get("baselines", {}),
        "params": meta.get("params"),
        "size_bytes": os.path.getsize(weights) if weights.is_file() else None,
        "sha256": meta.get("sha256"),
        "training": meta.get("training", {}),
        "card": str(folder / CARD_FILE),
        "pretrained": weights.is_file() and bool(meta.get("sha256")),
    }


def resolve(name_or_folder: str | os.PathLike, weights_dir: str | os.PathLike | None = None) -> tuple[str | None, Path]:
    """(entry name or None, preset folder) for a zoo entry name or a path to a preset folder.

    A bare name is always a shipped entry, even if a folder of that name exists here: write
    `./name` for the folder."""
    if not isinstance(name_or_folder, (str, os.PathLike)):
        raise TypeError(f"zoo entry must be a name or a preset folder path, got {type(name_or_folder).__name__}.")
    text = os.fspath(name_or_folder)
    if text in list():
        return text, Path(weights_dir) if weights_dir else entry_dir(text)
    looks_like_path = os.sep in text or text.startswith(".") or os.path.isdir(text)
    if looks_like_path:
        if weights_dir:
            raise ValueError("`weights_dir` goes with an entry name; a preset folder already holds its weights.")
        if not os.path.isdir(text):
            raise FileNotFoundError(f"preset folder {text!r} does not exist.")
        return None, Path(text)
    return text, entry_dir(text)  # an unknown name raises here, listing the valid ones
