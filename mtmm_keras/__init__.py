"""mtmm-keras: multi-task and multi-modal models for Keras 3.

Submodules load on first use so that `import mtmm_keras` (and the `mtmm` CLI)
stays fast and does not pull in a deep-learning backend until it is needed.

Reloading saved models. The custom Keras classes (layers, losses, the regularizer, the metric,
the model classes; all registered under the package name "mtmm") must be registered before
`keras.models.load_model` meets them, so a process that only ran `import keras, mtmm_keras`
can reload any `.keras` file this library saved. `import mtmm_keras` guarantees that without
importing Keras itself:

* if Keras is already imported, the classes are registered right away (`_register_all()`);
* otherwise a one-shot import hook is placed on `sys.meta_path` that registers them the
  moment the `keras` module has finished loading, whoever imports it and whenever.

So the registry can never be looked at without the classes in it, and `import mtmm_keras`,
`mtmm --help`, `mtmm zoo list` or `mk.data.names()` still load neither Keras nor TensorFlow.
(Registering eagerly in this file would load TensorFlow on every `import mtmm_keras`, and Python
runs this file before `mtmm_keras.cli`, so the CLI would pay for it on `--help` too.) The `mtmm`
commands that load models import Keras first (`cli._quiet_backend`), which registers everything.
Code that loads models may call `mtmm_keras._register_all()` to say so explicitly; it is cheap
and idempotent. The modules it imports (`_REGISTERING`; tests/reliability/test_reload_new_process.py
checks the list is complete) import Keras, numpy and each other's leaf modules only, never the
builders, `data`, `zoo` or `export`: they may run in the middle of another import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

__version__ = "0.2.0"

_SUBMODULES = (
    "builders",
    "data",
    "distribute",
    "encoders",
    "layers",
    "losses",
    "metrics",
    "models",
    "regularizers",
    "retrieval",
    "saving",
    "tasks",
    "weighting",
    "zoo",
    "export",
)
_ATTRIBUTES = {"Task": "mtmm_keras.tasks"}
# Every module that defines a class registered under package "mtmm" (tests check this list is complete).
_REGISTERING = (
    "mtmm_keras.layers",  # every registered layer (fusion, experts, front end, text encoder, temperature, ...)
    "mtmm_keras.losses",
    "mtmm_keras.metrics",
    "mtmm_keras.models",
    "mtmm_keras.regularizers",
    "mtmm_keras.weighting",  # loss-balancing / gradient-aggregation methods (they hold state variables)
)

__all__ = ["Task", "__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'mtmm_keras' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def _register_all() -> None:
    """Register every mtmm Keras class with Keras (imports Keras and the modules that define them).

    `import mtmm_keras` already arranges this (see the module docstring); code that loads models
    (CLI commands, zoo, export) may call it before `keras.models.load_model` to make that explicit.
    Idempotent, and cheap once done.
    """
    for module in _REGISTERING:
        importlib.import_module(module)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """One-shot `sys.meta_path` hook: when `keras` is imported, run `_register_all()` right after it loads.

    It finds nothing itself: for `keras` it asks the other finders for the real spec and wraps that
    spec's own loader so that `exec_module` (the import of Keras) is followed by `_register_all()`.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "keras":
            return None
        _remove_hook(self)
        spec = importlib.util.find_spec("keras")
        loader = getattr(spec, "loader", None) if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_keras = loader.exec_module

        def exec_module(module: Any) -> None:
            loader.__dict__.pop("exec_module", None)  # back to the loader's own method
            run_keras(module)
            _register_all()

        try:
            loader.exec_module = exec_module  # this spec's own loader instance, not the class
        except (AttributeError, TypeError):  # a loader without instance attributes: leave it alone
            pass
        return spec


def _remove_hook(hook: _RegisterAfterKeras) -> None:
    try:
        sys.meta_path.remove(hook)
    except ValueError:
        pass


if "keras" in sys.modules:
    _register_all()
else:
    sys.meta_path.insert(0, _RegisterAfterKeras())
