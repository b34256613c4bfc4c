"""Name the pip extra when an optional dependency is missing (instead of `No module named 'onnx'`)."""

from __future__ import annotations

import importlib.util
from typing import Iterable


def require(modules: Iterable[str], extra: str, purpose: str) -> None:
    """Raise ImportError naming `pip install "mtmm-keras[extra]"` unless every module in `modules` is installed."""
    missing = sorted({module for module in modules if importlib.util.find_spec(module) is None})
    if missing:
        raise ImportError(f"{purpose} needs {', '.join(missing)}, which is not installed: "
                          f'pip install "mtmm-keras[{extra}]"')
