"""mtmm-keras: multi-task and multi-modal models for Keras 3.

Submodules load on first use so that `import mtmm_keras` (and the `mtmm` CLI)
stays fast and does not pull in a deep-learning backend until it is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "builders",
    "data",
    "encoders",
    "layers",
    "losses",
    "metrics",
    "models",
    "regularizers",
    "tasks",
    "zoo",
    "export",
)
_ATTRIBUTES = {"Task": "mtmm_keras.tasks"}

__all__ = ["Task", "__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'mtmm_keras' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
