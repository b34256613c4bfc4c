"""open_clip_torch's `loss.py` (ClipLoss, SigLipLoss), loaded on its own: the oracle for tests and benchmarks.

open_clip is installed with `--no-deps` (CI: `pip install --no-deps open_clip_torch==3.3.0`): its package
`__init__` imports torchvision, which cannot sit beside the CPU torch the project pins. `loss.py` imports
only torch, so it is loaded straight from the installed distribution's file, after checking that it still
imports nothing from its own package. Never imported by the library.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
from pathlib import Path
from types import ModuleType

OPEN_CLIP_VERSION = "3.3.0"


def open_clip_loss_file() -> Path | None:
    """The installed `open_clip/loss.py`, or None when open_clip_torch is not installed."""
    try:
        dist = importlib.metadata.distribution("open_clip_torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file("open_clip/loss.py"))
    return path if path.is_file() else None


def standalone_problems(path: Path) -> list[str]:
    """Imports of `path` that would run the open_clip package (relative or `open_clip.*`); [] when it stands alone."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("open_clip")):
            problems.append(ast.dump(node))
        if isinstance(node, ast.Import) and any(alias.name.startswith("open_clip") for alias in node.names):
            problems.append(ast.dump(node))
    return problems


def load_open_clip_losses() -> ModuleType | None:
    """open_clip's loss module (needs torch), or None when open_clip_torch or torch is missing."""
    path = open_clip_loss_file()
    if path is None or importlib.util.find_spec("torch") is None:
        return None
    version = importlib.metadata.version("open_clip_torch")
    if version != OPEN_CLIP_VERSION:
        raise RuntimeError(f"open_clip_torch {version} is installed; the reference is {OPEN_CLIP_VERSION}.")
    problems = standalone_problems(path)
    if problems:
        raise RuntimeError(f"{path} now imports from its own package, so it cannot be loaded alone: {problems}")
    spec = importlib.util.spec_from_file_location("_open_clip_loss_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
